#!/usr/bin/env python3
"""msdiff.py BEFORE.ms AFTER.ms N [depth]: live heap bytes per connection by allocation
site (massif detailed snapshots), AFTER - BEFORE divided by N."""
import re, sys, collections
LINE = re.compile(r'^( *)n(\d+): (\d+) (.*)$')
SKIP = re.compile(r'(^|[ <])(alloc::|core::|std::|hashbrown::|<alloc::|<core::|<std::|__rust|__rdl|__rg_|\?\?\?)|\((library/|alloc\.rs|unix\.rs|raw_vec|bytes_mut\.rs|boxed\.rs|vec/|arc\.rs|rc\.rs)')
def frame(text):
    # "0xADDR: func (file:line)" -> "func (file:line)"
    text = re.sub(r'^0x[0-9A-F]+: ', '', text)
    return text
def leaves(path):
    out = collections.Counter()
    stack = []
    started = False
    for line in open(path):
        if line.startswith('heap_tree='):
            started = True; continue
        if not started: continue
        m = LINE.match(line.rstrip('\n'))
        if not m: continue
        depth = len(m.group(1)); kids = int(m.group(2)); size = int(m.group(3)); text = m.group(4)
        stack = stack[:depth]
        stack.append(frame(text))
        if kids == 0:
            out[tuple(stack[1:])] += size
    return out
def key(frames, depth):
    keep = [f for f in frames if not SKIP.search(f) and 'below massif' not in f]
    if not keep:
        return ' <- '.join(frames[:3])
    return ' <- '.join(keep[:depth])
if __name__ == '__main__':
    before, after, n = leaves(sys.argv[1]), leaves(sys.argv[2]), int(sys.argv[3])
    depth = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    diff = collections.Counter()
    for frames, size in after.items(): diff[key(frames, depth)] += size
    for frames, size in before.items(): diff[key(frames, depth)] -= size
    total = sum(diff.values())
    print(f'total live heap growth: {total} B = {total/n:.0f} B per connection')
    for k, v in diff.most_common():
        if abs(v) / n < 8: continue
        print(f'{v/n:8.0f}  {k}')
