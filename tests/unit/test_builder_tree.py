"""The in-memory stage tree, owner lookup and output/context option parsing."""

import pytest

from ocibuild.builder.options import ContextSpec, OutputSpec, parse_key_values
from ocibuild.builder.tree import Tree, ancestors, clean
from ocibuild.builder.users import resolve_owner
from ocibuild.errors import BuildError, InvalidOption
from ocibuild.layer.entry import Kind, TarEntry


def d(path, **kw):
    return TarEntry(path=path, kind=Kind.DIR, mode=0o755, **kw)


def f(path, data=b"", **kw):
    return TarEntry(path=path, kind=Kind.FILE, mode=0o644, size=len(data), data=data, **kw)


def ln(path, target):
    return TarEntry(path=path, kind=Kind.SYMLINK, mode=0o777, linkname=target)


@pytest.mark.parametrize("raw,want", [("/", ""), ("/a/./b/../c/", "a/c"), ("../../x", "x"), ("a//b", "a/b")])
def test_clean_never_leaves_root(raw, want):
    assert clean(raw) == want


def test_ancestors():
    assert ancestors("a/b/c") == ["a", "a/b"] and ancestors("a") == []


def test_put_creates_parents_and_walks_in_byte_order():
    t = Tree([f("b/z"), f("b/a"), f("a")])
    assert [e.path for e in t.walk()] == ["a", "b", "b/a", "b/z"]
    assert t.is_dir("b") and not t.is_dir("a")


def test_file_replacing_dir_drops_subtree():
    t = Tree([f("d/x"), f("d/y/z")])
    t.put(f("d"))
    assert [e.path for e in t.walk()] == ["d"]


def test_resolve_stays_inside():
    t = Tree([d("usr/lib"), ln("lib", "usr/lib"), ln("abs", "/usr"), ln("up", "../../../usr"),
              ln("loop1", "loop2"), ln("loop2", "loop1")])
    assert t.resolve("lib/x") == "usr/lib/x"
    assert t.resolve("abs/lib") == "usr/lib"
    assert t.resolve("up/lib") == "usr/lib"
    assert t.resolve("lib", follow_final=False) == "lib"
    with pytest.raises(BuildError, match="too many levels"):
        t.resolve("loop1")


def test_read_follows_links():
    t = Tree([f("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"), ln("p", "/etc/passwd")])
    assert t.read("p").startswith(b"root")
    assert t.read("missing") is None


PASSWD = b"root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1001::/home/bob:/bin/sh\n"
GROUP = b"root:x:0:\nstaff:x:50:\nbob:x:1001:\n"


@pytest.mark.parametrize("spec,want", [
    ("10", (10, 10)), ("10:20", (10, 20)), ("bob", (1000, 1001)), ("bob:staff", (1000, 50)),
    ("0:bob", (0, 1001)), ("1000:", (1000, 1000)),
])
def test_resolve_owner(spec, want):
    t = Tree([f("etc/passwd", PASSWD), f("etc/group", GROUP)])
    assert resolve_owner(spec, t) == want


def test_resolve_owner_errors_name_the_culprit():
    t = Tree([f("etc/passwd", PASSWD)])
    with pytest.raises(BuildError, match="unable to find user alice"):
        resolve_owner("alice", t)
    with pytest.raises(BuildError, match="unable to find group nogroup"):
        resolve_owner("bob:nogroup", t)
    with pytest.raises(BuildError, match="no /etc/passwd"):
        resolve_owner("bob", Tree())


@pytest.mark.parametrize("text,kind,dest,tar", [
    ("type=oci,dest=out.tar", "oci", "out.tar", True),
    ("type=oci,dest=dir,tar=false", "oci", "dir", False),
    ("type=docker,dest=d.tar", "docker", "d.tar", True),
    ("out", "local", "out", True),
    ("-", "tar", "-", True),
    ('"type=oci","dest=a,b.tar"', "oci", "a,b.tar", True),
])
def test_output_spec(text, kind, dest, tar):
    spec = OutputSpec.parse(text)
    assert (spec.type, spec.dest, spec.as_tar) == (kind, dest, tar)


@pytest.mark.parametrize("bad", ["type=foo,dest=x", "type=oci", "type=oci,dest", "type=oci,dest=x,tar=maybe"])
def test_output_spec_rejects(bad):
    with pytest.raises(InvalidOption):
        OutputSpec.parse(bad).as_tar


@pytest.mark.parametrize("text,want", [
    ("base=oci-layout:///p/lay:v1", ("base", "oci-layout", "/p/lay", "v1")),
    ("base=oci-layout://rel/lay@sha256:" + "a" * 64, ("base", "oci-layout", "rel/lay", "sha256:" + "a" * 64)),
    ("Base=oci-layout:///p/lay", ("base", "oci-layout", "/p/lay", "")),
    ("src=../other", ("src", "dir", "../other", "")),
])
def test_context_spec(text, want):
    c = ContextSpec.parse(text)
    assert (c.name, c.kind, c.path, c.ref) == want


def test_key_values_take_bare_names_from_environment(monkeypatch):
    monkeypatch.setenv("FROM_ENV", "v")
    monkeypatch.delenv("UNSET_X", raising=False)
    assert parse_key_values(["A=1", "B=", "FROM_ENV", "UNSET_X"], "--build-arg") == {"A": "1", "B": "", "FROM_ENV": "v"}
