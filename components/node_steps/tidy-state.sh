# The last delete on a node also removes the project's state directory: once no step holds the
# node and no record is left, only the lock and empty directories remain.
rmdir "$HOLDERS_DIR" "$OWNED_DIR" 2>/dev/null || true
if [ ! -e "$HOLDERS_DIR" ] && [ ! -e "$OWNED_DIR" ]; then
  case "$(ls -A "$STATE_DIR" 2>/dev/null)" in
    "" | "${LOCK_FILE##*/}")
      rm -f "$LOCK_FILE"
      rmdir "$STATE_DIR" 2>/dev/null || true
      ;;
  esac
fi
