# Delete. When Pulumi replaces this step it runs the new create first and this old delete last,
# with the old inputs: undo the step only if no newer create holds it (lib.sh, holders).
if ! release_step; then
  log "$STEP: left in place; a newer $STEP holds this node (the step was replaced)"
  echo "kept: held by a newer $STEP"
  STEP_DONE=true
  exit 0
fi
