# The dashboard's browser tests (tests/test_dashboard_browser.py) drive Debian's chromium with Playwright
# (launched with executable_path, so Playwright never downloads a browser of its own). Idempotent: apt
# installs it once; later runs on the same machine find /usr/bin/chromium and do nothing.
if [ ! -x /usr/bin/chromium ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            chromium fonts-dejavu-core >/dev/null
    else
        echo "chromium is needed for the dashboard's browser tests (apt-get install chromium)" >&2
    fi
fi
[ -x /usr/bin/chromium ] && /usr/bin/chromium --version || true
