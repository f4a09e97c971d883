#!/usr/bin/env python3
"""Checks the iOS app's Swift sources against the Swift bindings uniffi generated for mobile-core.

Swift cannot be compiled here, so this catches the class of mistake that broke the app before: a name
of the generated API written with other capitalisation (uniffi 0.32 keeps error variants UpperCamelCase,
`FbnetError.Cancelled`, while functions and fields are lowerCamelCase). It reports every identifier of
the app that matches a generated identifier case-insensitively but not exactly (an UpperCamelCase word
beside a lowerCamelCase generated one is taken for a Swift type), unless the app or the bindings define
that exact spelling too, and every `FbnetError.X` whose X is not a generated case.

Usage: check-swift-names.py BINDINGS.swift SWIFT_SOURCE_DIR
"""
import pathlib
import re
import sys

IDENT = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")
STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


def code(text):
    """The text without comments and string literals (their words are not names)."""
    return STRINGS.sub('""', COMMENTS.sub(" ", text))


def main():
    bindings_text = code(pathlib.Path(sys.argv[1]).read_text())
    sources = sorted(pathlib.Path(sys.argv[2]).rglob("*.swift"))
    if not sources:
        sys.exit(f"no Swift sources under {sys.argv[2]}")
    generated = set(IDENT.findall(bindings_text))
    by_lower = {}
    for name in generated:
        by_lower.setdefault(name.lower(), set()).add(name)
    app = {p: code(p.read_text()) for p in sources}
    all_app = "\n".join(app.values())
    cases = set(re.findall(r"^\s*case\s+(\w+)", bindings_text.split("enum FbnetError", 1)[1].split("\n}", 1)[0], re.M))
    problems = []
    for path, text in app.items():
        for n, line in enumerate(text.splitlines(), 1):
            for name in IDENT.findall(line):
                # an UpperCamelCase word beside a lowerCamelCase generated one is a Swift type
                # (`Label`, `Image`, `Self`), not a misspelt generated name
                spellings = {
                    g for g in by_lower.get(name.lower(), set())
                    if not (name[0].isupper() and g[0].islower())
                }
                if spellings and name not in generated:
                    # defined by the app itself in this spelling (a local of its own) is fine
                    declared = re.search(rf"\b(?:let|var|func|case|enum|struct|class)\s+{name}\b", all_app)
                    if not declared:
                        problems.append(f"{path}:{n}: `{name}` is not generated; the bindings spell it {sorted(spellings)}")
            for case in re.findall(r"FbnetError\.(\w+)", line):
                if case not in cases:
                    problems.append(f"{path}:{n}: FbnetError has no case `{case}` (cases: {sorted(cases)})")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print(f"Swift names: {len(sources)} files checked against {len(generated)} generated identifiers")


if __name__ == "__main__":
    main()
