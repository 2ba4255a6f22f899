"""Extract the JSON field names of KubeletConfiguration (kubelet.config.k8s.io/v1beta1).

Reads `config/v1beta1/types.go` of the `k8s.io/kubelet` Go module (the staging module that
defines the type the real kubelet decodes strictly) and prints, as JSON, the field names of
KubeletConfiguration and of the nested structs this project renders. The output is committed
under tests/data/ so the renderer's test needs no Go toolchain.

Usage: python scripts/kubelet_config_fields.py <k8s.io/kubelet module dir> <kubernetes version>
(the module dir is what `go mod download -json k8s.io/kubelet@v0.30.1` reports as "Dir").
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

STRUCT = re.compile(r"^type (\w+) struct \{\n(.*?)^\}", re.DOTALL | re.MULTILINE)
FIELD = re.compile(r'^\s+(\w+)\s+([\w.\[\]*]+)\s+`json:"([^",]*)', re.MULTILINE)
NESTED = ("KubeletAuthentication", "KubeletAuthorization", "KubeletX509Authentication",
          "KubeletWebhookAuthentication", "KubeletAnonymousAuthentication",
          "KubeletWebhookAuthorization")


def struct_fields(source: str) -> dict[str, dict[str, str]]:
    structs: dict[str, dict[str, str]] = {}
    for name, body in STRUCT.findall(source):
        structs[name] = {json_name: go_type for _, go_type, json_name in FIELD.findall(body)
                         if json_name and json_name != "-"}
    return structs


def main() -> None:
    module_dir, version = Path(sys.argv[1]), sys.argv[2]
    structs = struct_fields((module_dir / "config/v1beta1/types.go").read_text())
    fields = {"KubeletConfiguration": sorted(structs["KubeletConfiguration"])}
    fields.update({name: sorted(structs[name]) for name in NESTED})
    print(json.dumps({"kubernetesVersion": version, "module": module_dir.name, "fields": fields},
                     indent=2))


if __name__ == "__main__":
    main()
