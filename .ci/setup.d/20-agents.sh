# The real agent CLIs for the real-CLI test tier (tests/test_real_agents.py), pinned, cached under $AO_TOOLS:
#   $AO_TOOLS/npm/        npm --prefix: claude, codex, opencode, each with its platform binary package
#   $AO_TOOLS/opencode/   what opencode installs into its config folder on first use (@opencode-ai/plugin),
#                         so a test home links it instead of running npm at test time
#   $AO_TOOLS/aider/      aider in its own venv: its exact pins clash with ours
#   $AO_TOOLS/bin/        one link per CLI, the only folder the tests put on PATH
# These are the versions the screens in tests/data/agent-screens were taken from. Each part is skipped when its
# stamp says the pinned version is installed already. Sourced by .ci/run (set -euo pipefail): no `exit`.

ao_agents_setup() {
    local tools="${AO_TOOLS:-$HOME/.cache/ao-tools}"
    local npm_pkgs="@anthropic-ai/claude-code@2.1.197 @openai/codex@0.171.0 opencode-ai@1.18.33"
    local aider_pkg="aider-chat==0.86.2"
    local plugin_pkg="@opencode-ai/plugin@1.18.33"
    mkdir -p "$tools"

    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq nodejs npm
    fi
    local node_major
    node_major="$(node -p 'process.versions.node.split(".")[0]')"
    if [ "$node_major" -lt 18 ]; then
        echo "the agent CLIs need Node.js 18 or newer; this machine has $(node --version)" >&2
        return 1
    fi

    if [ "$(cat "$tools/npm/.stamp" 2>/dev/null)" != "$npm_pkgs" ]; then
        rm -rf "$tools/npm" && mkdir -p "$tools/npm"
        # --include=optional: the platform binaries of claude, codex and opencode are optional dependencies
        npm install --prefix "$tools/npm" --no-audit --no-fund --include=optional --loglevel=error $npm_pkgs
        echo "$npm_pkgs" > "$tools/npm/.stamp"
    fi
    "$tools/npm/node_modules/.bin/claude" --version
    "$tools/npm/node_modules/.bin/codex" --version
    "$tools/npm/node_modules/.bin/opencode" --version

    if [ "$(cat "$tools/aider/.stamp" 2>/dev/null)" != "$aider_pkg" ]; then
        rm -rf "$tools/aider"
        python3 -m venv "$tools/aider"
        "$tools/aider/bin/pip" install -q --disable-pip-version-check "$aider_pkg"
        echo "$aider_pkg" > "$tools/aider/.stamp"
    fi
    "$tools/aider/bin/aider" --version

    # opencode 1.18 bundles its provider SDKs (@ai-sdk/openai-compatible included), but at every start it
    # makes sure its config folder has @opencode-ai/plugin, running `npm install` there when it is missing.
    if [ "$(cat "$tools/opencode/.stamp" 2>/dev/null)" != "$plugin_pkg" ]; then
        rm -rf "$tools/opencode" && mkdir -p "$tools/opencode"
        printf '{\n  "dependencies": {\n    "@opencode-ai/plugin": "%s"\n  }\n}\n' "${plugin_pkg##*@}" \
            > "$tools/opencode/package.json"
        npm install --prefix "$tools/opencode" --no-audit --no-fund --loglevel=error
        echo "$plugin_pkg" > "$tools/opencode/.stamp"
    fi

    mkdir -p "$tools/bin"
    ln -sfn "$tools/npm/node_modules/.bin/claude" "$tools/bin/claude"
    ln -sfn "$tools/npm/node_modules/.bin/codex" "$tools/bin/codex"
    ln -sfn "$tools/npm/node_modules/.bin/opencode" "$tools/bin/opencode"
    ln -sfn "$tools/aider/bin/aider" "$tools/bin/aider"
}
ao_agents_setup
unset -f ao_agents_setup
