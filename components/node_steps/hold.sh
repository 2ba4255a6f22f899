# The create or update succeeded: this resource holds the step on the node (see release.sh).
hold_step "$MODE"
