#!/usr/bin/env bash
# A run's report.html as a browser draws it: a full-page PNG from headless
# Chromium (Debian's `chromium` package, installed with apt-get when it is
# missing; nothing else is downloaded). The report is one self-contained
# file, so the browser runs without network access.
#
#   scripts/report_screenshot.sh RUN_DIR OUT.png [WIDTH]
#
# WIDTH is the window width in pixels (default 1200); the height is the
# page's own, measured first, so the PNG holds the whole report.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 RUN_DIR OUT.png [WIDTH]" >&2
    exit 2
fi
run_dir=$1
out=$2
width=${3:-1200}
report="$run_dir/report.html"
if [ ! -f "$report" ]; then
    echo "error: $report not found (train the run without --no-report)" >&2
    exit 1
fi

browser=""
for b in chromium chromium-browser google-chrome; do
    if command -v "$b" >/dev/null 2>&1; then
        browser=$b
        break
    fi
done
if [ -z "$browser" ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: no Chromium found and no apt-get to install Debian's chromium package" >&2
        exit 1
    fi
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    echo "installing Debian's chromium package (apt-get)..." >&2
    $sudo apt-get install -y --no-install-recommends chromium >&2 \
        || { $sudo apt-get update >&2 && $sudo apt-get install -y --no-install-recommends chromium >&2; }
    browser=chromium
fi

url="file://$(cd "$(dirname "$report")" && pwd)/$(basename "$report")"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile"
    --no-first-run --disable-extensions --allow-file-access-from-files)

# The page's height at this width: a wrapper page loads the report in a
# frame and writes its laid-out height into the DOM that --dump-dom prints.
cat > "$profile/measure.html" <<HTML
<!DOCTYPE html><html><body style="margin:0">
<iframe id="f" src="$url" style="width:${width}px;height:200px;border:0"></iframe>
<script>
document.getElementById('f').onload = function () {
  var h = -1;
  try { h = this.contentDocument.documentElement.scrollHeight; } catch (e) {}
  document.body.setAttribute('data-height', h);
};
</script></body></html>
HTML
height=$("$browser" "${flags[@]}" --window-size="$width,1000" --virtual-time-budget=5000 \
    --dump-dom "file://$profile/measure.html" 2>/dev/null | sed -n 's/.*data-height="\([0-9]*\)".*/\1/p' | head -1)
if [ -z "$height" ] || [ "$height" -le 0 ]; then
    echo "warning: could not measure the page; taking a 1200 px tall screenshot" >&2
    height=1200
fi
# Chromium refuses windows much taller than this; the top of a longer page is kept.
[ "$height" -gt 16000 ] && height=16000

mkdir -p "$(dirname "$out")"
"$browser" "${flags[@]}" --window-size="$width,$height" --virtual-time-budget=5000 \
    --screenshot="$out" "$url" 2>/dev/null
if [ ! -s "$out" ]; then
    echo "error: $browser wrote no screenshot to $out" >&2
    exit 1
fi
echo "$out: ${width}x${height} screenshot of $report ($browser)"
