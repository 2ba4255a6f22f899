# The create or update ($1) succeeded: this resource holds the step on the node (see release.sh).
hold_step "${1:-create}"
