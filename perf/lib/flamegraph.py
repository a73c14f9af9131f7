#!/usr/bin/env python3
"""perf/lib/flamegraph.py: a flame graph (SVG) from `perf script` output, with no other tools.

    perf script -i perf.data | python3 perf/lib/flamegraph.py --title "imap4be" > flame.svg
    perf script -i perf.data | python3 perf/lib/flamegraph.py --folded     # "a;b;c COUNT" lines

Each sample of `perf script` is a header line followed by one frame per line (innermost first) and
a blank line. Frames are folded root first into a tree; each box's width is its share of samples,
callers below callees. Swift names are shortened by `swift demangle --simplified` when it is on
PATH. Hovering a box shows its full name and sample count (the SVG <title>).
"""
import html
import shutil
import subprocess
import sys

WIDTH = 1200
ROW = 16
FONT = 11


def samples(lines):
    """Yields (process, [frames root first]) per sample."""
    process, frames = None, []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if process is not None:
                yield process, list(reversed(frames))
            process, frames = None, []
        elif process is None:
            process = line.split()[0] if line.split() else "?"
        else:
            # "    7f12 symbol+0x1a (/path/lib.so)": keep the symbol, drop address and offset.
            parts = line.strip().split(" ", 1)
            symbol = parts[1] if len(parts) > 1 else parts[0]
            symbol = symbol.rsplit(" (", 1)[0]
            if "+0x" in symbol:
                symbol = symbol[: symbol.rindex("+0x")]
            frames.append(symbol or "[unknown]")
    if process is not None:
        yield process, list(reversed(frames))


def demangled(names):
    """Maps mangled Swift names to simplified ones with `swift demangle`, when available."""
    swift = shutil.which("swift")
    if not swift:
        return {}
    names = sorted(names)
    result = subprocess.run([swift, "demangle", "--simplified"], input="\n".join(names), capture_output=True, text=True)
    out = result.stdout.split("\n")
    return dict(zip(names, out)) if result.returncode == 0 and len(out) >= len(names) else {}


def fold(source):
    counts = {}
    for process, frames in samples(source):
        key = tuple([process] + frames)
        counts[key] = counts.get(key, 0) + 1
    names = demangled({frame for key in counts for frame in key[1:] if frame.startswith("$s")})
    folded = {}
    for key, count in counts.items():
        key = tuple(names.get(frame, frame) for frame in key)
        folded[key] = folded.get(key, 0) + count
    return folded


def tree(folded):
    root = {"name": "all", "count": 0, "children": {}}
    for stack, count in folded.items():
        root["count"] += count
        node = root
        for frame in stack:
            node = node["children"].setdefault(frame, {"name": frame, "count": 0, "children": {}})
            node["count"] += count
    return root


def depth(node):
    return 1 + max((depth(child) for child in node["children"].values()), default=0)


def colour(name):
    """Warm colours, stable per name, so the same function looks the same in two graphs."""
    value = sum(ord(c) * (i + 1) for i, c in enumerate(name)) % 1000 / 1000
    return "rgb(%d,%d,%d)" % (225 + int(30 * value), int(80 + 120 * value), int(40 + 30 * (1 - value)))


def render(root, title):
    levels = depth(root)
    height = levels * ROW + 50
    total = max(root["count"], 1)
    boxes = []

    def draw(node, x, level):
        width = node["count"] / total * (WIDTH - 20)
        if width < 1.0:  # narrower than a pixel: invisible, and only makes the file bigger
            return
        y = height - 20 - (level + 1) * ROW
        label = node["name"]
        share = 100.0 * node["count"] / total
        characters = int(width / (FONT * 0.6))
        text = label if len(label) <= characters else (label[: characters - 2] + ".." if characters > 3 else "")
        boxes.append(
            '<g><title>%s (%d samples, %.2f%%)</title><rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" '
            'rx="2"/><text x="%.1f" y="%d">%s</text></g>'
            % (html.escape(label), node["count"], share, x, y, width, ROW - 1, colour(label), x + 3, y + ROW - 4,
               html.escape(text)))
        for child in sorted(node["children"].values(), key=lambda c: c["name"]):
            draw(child, x, level + 1)
            x += child["count"] / total * (WIDTH - 20)

    draw(root, 10, 0)
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="monospace" font-size="%d">\n'
        '<rect width="100%%" height="100%%" fill="#fdfdf8"/>\n'
        '<text x="%d" y="24" font-size="16" text-anchor="middle">%s (%d samples)</text>\n%s\n</svg>\n'
        % (WIDTH, height, FONT, WIDTH // 2, html.escape(title), root["count"], "\n".join(boxes)))


def main():
    args = sys.argv[1:]
    title = "perf samples"
    if "--title" in args:
        title = args[args.index("--title") + 1]
    folded = fold(sys.stdin)
    if "--folded" in args:
        for stack, count in sorted(folded.items()):
            print("%s %d" % (";".join(stack), count))
        return
    sys.stdout.write(render(tree(folded), title))


if __name__ == "__main__":
    main()
