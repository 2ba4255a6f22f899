"""Stack configuration, parsed into frozen, typed models before any resource is registered.

The raw stack config (`homelab-kubelet:<key>` objects) goes through pydantic with
`extra="forbid"`, so a typo is an error, and every error names the config key path
(`nodes[1].podCIDR`) and the bad value. Per-node reservation overrides are merged over the
stack-wide `reservations` here, so everything downstream sees one resolved `NodeSettings`.

One home for each kind of thing:

- `types.py`: field types and validators (one value each: quantities, paths, URLs, durations);
- `host_keys.py`: SSH host keys and OpenSSH's known_hosts;
- `models.py`: the pydantic models, the one source of every default;
- `kubelet_fields.py`: `kubelet.config`, `kubelet.featureGates` and `extraArgs` against the
  kubelet release's own table (components/kubelet_api.py);
- `parse.py`: `parse_settings` as named steps that each return their problems, and
  `resolve_host_keys`.

The public names are re-exported here: `from components.settings import ...`.
"""

from components.settings.host_keys import PINNABLE_KEY_TYPES, known_host_keys, public_key_problem
from components.settings.models import (
    DEFAULT_KNOWN_HOSTS,
    DEFAULT_KUBELET_PORT,
    DEFAULT_MAX_PODS,
    KubeletSettings,
    KubernetesSettings,
    NodeConfig,
    NodeSettings,
    PkiSettings,
    PkiSubject,
    Reservations,
    ResourceReservation,
    RolloutSettings,
    Settings,
    SshSettings,
    Taint,
    pod_addresses,
)
from components.settings.parse import (
    CONFIG_NAMESPACE,
    OBJECT_KEYS,
    SECRET_KEYS,
    SettingsError,
    parse_settings,
    pod_cidr_overlaps,
    resolve_host_keys,
    unknown_key_problems,
)
from components.settings.types import Arch, go_duration_ns, unit_word_problem

__all__ = [
    "CONFIG_NAMESPACE",
    "DEFAULT_KNOWN_HOSTS",
    "DEFAULT_KUBELET_PORT",
    "DEFAULT_MAX_PODS",
    "OBJECT_KEYS",
    "PINNABLE_KEY_TYPES",
    "SECRET_KEYS",
    "Arch",
    "KubeletSettings",
    "KubernetesSettings",
    "NodeConfig",
    "NodeSettings",
    "PkiSettings",
    "PkiSubject",
    "Reservations",
    "ResourceReservation",
    "RolloutSettings",
    "Settings",
    "SettingsError",
    "SshSettings",
    "Taint",
    "go_duration_ns",
    "known_host_keys",
    "parse_settings",
    "pod_addresses",
    "pod_cidr_overlaps",
    "public_key_problem",
    "resolve_host_keys",
    "unit_word_problem",
    "unknown_key_problems",
]
