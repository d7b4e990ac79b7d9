#!/usr/bin/env python3
"""Per-function instruction counts per call from two callgrind files (N and 3N runs):
(I(3N) - I(N)) / 2N per function, inclusive or self. Usage:
  python3 bench/cgdiff.py A.out B.out N [--self] [--grep REGEX] [--top 40]"""
import re, subprocess, sys

def table(path, inclusive):
    out = subprocess.run(['callgrind_annotate', f'--inclusive={"yes" if inclusive else "no"}',
                          '--threshold=100', '--auto=no', path], capture_output=True, text=True).stdout
    t = {}
    for line in out.splitlines():
        m = re.match(r'\s*([\d,]+) \([^)]*\)\s+(.*)$', line)
        if m:
            name = re.sub(r" \[[^\]]*\]$", '', m.group(2))
            t[name] = t.get(name, 0) + int(m.group(1).replace(',', ''))
    return t

a, b, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
inclusive = '--self' not in sys.argv
pat = re.compile(sys.argv[sys.argv.index('--grep') + 1]) if '--grep' in sys.argv else None
top = int(sys.argv[sys.argv.index('--top') + 1]) if '--top' in sys.argv else 40
ta, tb = table(a, inclusive), table(b, inclusive)
rows = sorted(((tb.get(k, 0) - ta.get(k, 0)) / (2 * n), k) for k in set(ta) | set(tb))
rows = [r for r in rows if pat is None or pat.search(r[1])]
for v, k in sorted(rows, reverse=True)[:top]:
    print(f'{v:10.0f}  {k[:160]}')
