""".dockerignore matching with moby/patternmatcher's semantics."""

import pytest

from ocibuild.dockerfile.ignore import Matcher, go_clean, load_ignore, match_component, parse_ignore
from ocibuild.errors import InvalidInput


def test_parse_ignore_file():
    text = "\ufeff# comment\n\n  node_modules  \n/abs/path\n!  keep.txt\n ./a/../b//c/\n  # not a comment\n*.tmp\r\n"
    assert parse_ignore(text) == ["node_modules", "abs/path", "!keep.txt", "b/c", "# not a comment", "*.tmp"]


@pytest.mark.parametrize(("path", "expected"), [
    ("a/b/../c", "a/c"), ("/../x", "/x"), ("../x", "../x"), ("", "."), ("./", "."), ("a//b/./", "a/b"),
])
def test_go_clean(path, expected):
    assert go_clean(path) == expected


CASES = [
    # pattern list, path, excluded?
    (["foo"], "foo", True),
    (["foo"], "foo/bar/baz", True),          # a parent directory matches
    (["foo"], "foobar", False),
    (["foo"], "x/foo", False),               # patterns are anchored at the context root
    (["*.md"], "README.md", True),
    (["*.md"], "docs/README.md", False),     # "*" does not cross "/"
    (["*/*.md"], "docs/README.md", True),
    (["**/*.md"], "docs/a/b/README.md", True),
    (["**/*.md"], "README.md", True),
    (["**"], "anything/at/all", True),
    (["docs/**"], "docs/a/b", True),
    (["docs/**"], "docsx", False),
    (["a/**/z"], "a/z", True),
    (["a/**/z"], "a/b/c/z", True),
    (["a/**/z"], "a/b/c/zz", False),
    (["**/node_modules"], "x/y/node_modules/pkg/index.js", True),
    (["file?.txt"], "file1.txt", True),
    (["file?.txt"], "file10.txt", False),
    (["file?.txt"], "file/.txt", False),
    (["[a-c]*"], "banana", True),
    (["[a-c]*"], "dog", False),
    (["[^a-c]*"], "dog", True),
    (["[^a-c]*"], "apple", False),
    (["[!a]"], "!", True),                   # Go has no "!" negation in classes
    (["[!a]"], "b", False),
    (["\\*"], "*", True),
    (["\\*"], "a", False),
    (["a\\?b"], "a?b", True),
    (["a\\?b"], "axb", False),
    (["file.txt"], "fileXtxt", False),       # "." is literal
    (["a+b(c)|{d}$"], "a+b(c)|{d}$", True),
    (["/root.txt"], "root.txt", True),
    (["./dir/"], "dir/x", True),
    # exceptions: the last matching pattern wins
    (["*.log", "!keep.log"], "keep.log", False),
    (["*.log", "!keep.log"], "other.log", True),
    (["*.log", "!keep.log", "keep.log"], "keep.log", True),
    (["build", "!build/keep"], "build/keep/file", False),
    (["build", "!build/keep"], "build/other", True),
    (["**", "!src/**", "src/**/*.test.js"], "src/a/b.js", False),
    (["**", "!src/**", "src/**/*.test.js"], "src/a/b.test.js", True),
    (["**", "!src/**"], "README", True),
    ([], "anything", False),
    (["*"], ".", False),
]


@pytest.mark.parametrize(("patterns", "path", "expected"), CASES)
def test_excluded(patterns, path, expected):
    assert Matcher(patterns).excluded(path) is expected


def test_may_contain_exceptions():
    m = Matcher(["build", "!build/keep/*.txt", "docs", "!**/important"])
    assert m.may_contain_exceptions("build") is True
    assert m.may_contain_exceptions("build/keep") is True
    assert m.may_contain_exceptions("docs") is True          # "**" can reach anywhere
    plain = Matcher(["build", "!src/keep"])
    assert plain.may_contain_exceptions("build") is False
    assert plain.may_contain_exceptions("src") is True
    assert plain.may_contain_exceptions("src/keep/deeper") is True  # the exception matches a parent
    assert Matcher(["build"]).may_contain_exceptions("build") is False


def test_bad_patterns():
    with pytest.raises(InvalidInput):
        Matcher(["[abc"])
    with pytest.raises(InvalidInput):
        Matcher(["abc\\"])
    with pytest.raises(InvalidInput, match='illegal exclusion pattern: "!"'):
        Matcher(["!"])


def test_match_component():
    assert match_component("*.go", "main.go")
    assert not match_component("*.go", "main.golang")
    assert match_component("[a-z]?", "b1")
    assert match_component("\\[x\\]", "[x]")


def test_load_ignore_prefers_dockerfile_specific_file(tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / ".dockerignore").write_text("*.log\n")
    dockerfile = tmp_path / "app.Dockerfile"
    dockerfile.write_text("FROM x\n")
    assert load_ignore(ctx, dockerfile).excluded("a.log")
    (tmp_path / "app.Dockerfile.dockerignore").write_text("*.tmp\n")
    m = load_ignore(ctx, dockerfile)
    assert m.excluded("a.tmp") and not m.excluded("a.log")
    assert not load_ignore(tmp_path / "ctx", None).excluded("a.tmp")
    assert not load_ignore(tmp_path).excluded("a.log")  # no file at all
