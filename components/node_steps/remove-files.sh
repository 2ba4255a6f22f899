# Delete of a write step: remove the files it wrote.
for path in "${FILES[@]}"; do
  rm -f "$path"
done
log "removed ${FILES[*]}"
