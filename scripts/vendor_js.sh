#!/usr/bin/env bash
# Vendor the JavaScript the book needs offline (MathJax 3, require.js, the ipywidgets HTML manager)
# from npm with pinned versions into vendor/ (git-ignored; _config.yml serves it as static files).
# Idempotent: does nothing when vendor/VERSIONS already lists the pinned versions.
set -euo pipefail

PACKAGES="mathjax@3.2.2 requirejs@2.3.8 @jupyter-widgets/html-manager@1.0.6"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/vendor"

if [[ -f "$OUT/VERSIONS" && "$(cat "$OUT/VERSIONS")" == "$PACKAGES" ]]; then
  echo "vendor/ is up to date ($PACKAGES)"
  exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent $PACKAGES >/dev/null)
for tgz in "$TMP"/*.tgz; do
  name="$(basename "$tgz" .tgz)"
  mkdir -p "$TMP/$name" && tar xzf "$tgz" -C "$TMP/$name"
done

rm -rf "$OUT.new" && mkdir -p "$OUT.new/mathjax" "$OUT.new/requirejs" "$OUT.new/html-manager"
# MathJax: the TeX -> CommonHTML component and what it loads on demand (no SVG/speech builds).
MJ="$TMP/mathjax-3.2.2/package"
cp "$MJ/LICENSE" "$MJ/es5/tex-chtml.js" "$MJ/es5/startup.js" "$OUT.new/mathjax/"
cp -r "$MJ/es5/input" "$MJ/es5/output" "$MJ/es5/ui" "$MJ/es5/a11y" "$MJ/es5/adaptors" "$OUT.new/mathjax/"
rm -rf "$OUT.new/mathjax/output/svg" "$OUT.new/mathjax/output/svg.js"
# require.js and the AMD build of the widget manager (bundles base + controls) with its fonts.
cp "$TMP/requirejs-2.3.8/package/require.js" "$OUT.new/requirejs/"
HM="$TMP/jupyter-widgets-html-manager-1.0.6/package"
cp "$HM/LICENSE" "$HM/dist/embed-amd.js" "$OUT.new/html-manager/"
cp "$HM"/dist/*.woff* "$HM"/dist/*.ttf "$HM"/dist/*.eot "$HM"/dist/*.svg "$OUT.new/html-manager/"
echo "$PACKAGES" > "$OUT.new/VERSIONS"

rm -rf "$OUT" && mv "$OUT.new" "$OUT"
echo "vendored into vendor/: $PACKAGES ($(du -sh "$OUT" | cut -f1))"
