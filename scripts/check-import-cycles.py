#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a circle.

Reads every `use crate::…`, `use super::…` and `crate::…`/`super::…` path of the crate's
non-test code (test modules are skipped), resolves each to the module file it names, and looks
for cycles in the file graph. Usage: check-import-cycles.py <crate>/src …
"""
import os
import re
import sys

PATH_RE = re.compile(r'\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)')


def module_of(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ('mod', 'lib', 'main'):
        rel = rel[:-1]
    return tuple(rel)


def strip_tests(text):
    """Drops `#[cfg(test)] mod … { … }` blocks and `#[cfg(test)] mod x;` lines."""
    out, i = [], 0
    for m in re.finditer(r'#\[cfg\(test\)\]\s*(pub(\([a-z]+\))?\s+)?mod\s+\w+\s*(\{|;)', text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        if m.group(3) == ';':
            i = m.end()
            continue
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {'{': 1, '}': -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return ''.join(out)


def check(src):
    files = {}
    for root, _, names in os.walk(src):
        for n in names:
            if n.endswith('.rs'):
                p = os.path.join(root, n)
                files[module_of(src, p)] = p
    test_files = set()
    for mod, p in files.items():
        text = open(p, encoding='utf-8').read()
        for m in re.finditer(r'#\[cfg\(test\)\]\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+(\w+)\s*;', text):
            test_files.add(mod + (m.group(1),))
    edges = {m: set() for m in files}
    for mod, p in files.items():
        if mod in test_files:
            continue
        text = strip_tests(open(p, encoding='utf-8').read())
        text = re.sub(r'//[^\n]*', '', text)
        is_dir_mod = os.path.basename(p) in ('mod.rs', 'lib.rs', 'main.rs')
        for m in PATH_RE.finditer(text):
            parts = m.group(2).split('::')[1:]
            if m.group(1) == 'crate':
                base = ()
            else:
                # `super` of a file module is its parent; of a mod.rs, the parent's parent.
                base = mod[:-1] if not is_dir_mod else mod[:-1]
            target = base + tuple(parts)
            while target and target not in files:
                target = target[:-1]
            if target != mod and target in files and target not in test_files:
                # A module importing its own ancestor's items through `crate::` is an edge to
                # the ancestor file; a child is not a cycle with its parent's `mod` line.
                edges[mod].add(target)
    # Parents declare children (`mod x;`), which is not an import: only `use` paths count.
    cycles, state, stack = [], {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for t in sorted(edges[n]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[n] = 2

    for n in sorted(edges):
        if n not in state:
            visit(n)
    return cycles


def main():
    bad = 0
    for src in sys.argv[1:]:
        for c in check(src):
            bad += 1
            print(f"{src}: import cycle: " + ' -> '.join('::'.join(m) or 'crate' for m in c))
    if bad:
        sys.exit(1)
    print(f"no import cycle in {', '.join(sys.argv[1:])}")


if __name__ == '__main__':
    main()
