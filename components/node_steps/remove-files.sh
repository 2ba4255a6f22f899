# Delete of a write step: remove the files it wrote and put back those it replaced (lib.sh,
# give_back); a file another program on the node names (USER_DIRS) stays.
give_back "${FILES[@]}"
