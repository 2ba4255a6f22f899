# Delete of the install step: remove the binary this program installed, put back one it
# replaced, and leave one that was there before (lib.sh, give_back).
give_back "$KUBELET_BINARY"
