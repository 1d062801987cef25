# The session tests drive real tmux. It is on every machine here; install it if a machine lacks it.
if ! command -v tmux >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq tmux
    else
        echo "tmux is required for the tests (apt-get install tmux)" >&2
        exit 1
    fi
fi
tmux -V
