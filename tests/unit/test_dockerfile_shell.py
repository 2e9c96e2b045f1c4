"""Word expansion, checked against the behaviour of BuildKit's shell lexer (lex.go and its
envVarTest / wordsTest / TestProcessWithMatches tables)."""

import pytest

from ocibuild.dockerfile.shell import Lexer, go_quote, process_word, process_words, referenced_names
from ocibuild.errors import DockerfileError

ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}

# (word, expected) with ENV above; "error" means DockerfileError.
WORDS = [
    ("hello", "hello"),
    ("he'll'o", "hello"),
    ("he'llo", "error"),
    ("he\\'llo", "he'llo"),
    ("he\\\\'llo", "error"),
    ("abc\\tdef", "abctdef"),
    ('"abc\\tdef"', "abc\\tdef"),
    ('"abc\\\\tdef"', "abc\\tdef"),
    ("'abc\\tdef'", "abc\\tdef"),
    ("hello\\", "hello"),
    ("hello\\\\", "hello\\"),
    ('"hello', "error"),
    ('"hello\\"', "error"),
    ('"hel\'lo"', "hel'lo"),
    ("'hello", "error"),
    ("'hello\\'", "hello\\"),
    ("'hello\\there'", "hello\\there"),
    ("'hello\\\\there'", "hello\\\\there"),
    ('"\'\'"', "''"),
    ("$.", "$."),
    ("$", "$"),
    ("he$1x", "hex"),
    ("he$.x", "he$.x"),
    ("he$pwd.", "he."),
    ("he$PWD", "he/home"),
    ("he\\$PWD", "he$PWD"),
    ("he\\\\$PWD", "he\\/home"),
    ('"he\\$PWD"', "he$PWD"),
    ('"he\\\\$PWD"', "he\\/home"),
    ("\\${}", "${}"),
    ("\\${}aaa", "${}aaa"),
    ("he\\${}xx", "he${}xx"),
    ("${}", "error"),
    ("${}aaa", "error"),
    ("he${}xx", "error"),
    ("he${hi}", "he"),
    ("he${hi}xx", "hexx"),
    ("he${PWD}", "he/home"),
    ("he${.}", "error"),
    ("he${XXX:-000}xx", "he000xx"),
    ("he${PWD:-000}xx", "he/homexx"),
    ("he${XXX:-$PWD}xx", "he/homexx"),
    ("he${XXX:-${PWD:-yyy}}xx", "he/homexx"),
    ("he${XXX:-${YYY:-yyy}}xx", "heyyyxx"),
    ("he${XXX:YYY}", "error"),
    ("he${XXX?}", "error"),
    ("he${XXX:?}", "error"),
    ("he${PWD?}", "he/home"),
    ("he${PWD:?}", "he/home"),
    ("he${NULL?}", "he"),
    ("he${NULL:?}", "error"),
    ("he${NULL-x}", "he"),
    ("he${NULL:-x}", "hex"),
    ("he${NULL+x}", "hex"),
    ("he${NULL:+x}", "he"),
    ("he${XXX:+${PWD}}xx", "hexx"),
    ("he${PWD:+${XXX}}xx", "hexx"),
    ("he${PWD:+${SHELL}}xx", "hebashxx"),
    ("he${XXX:+000}xx", "hexx"),
    ("he${PWD:+000}xx", "he000xx"),
    ("'he${XX}'", "he${XX}"),
    ('"he${PWD}"', "he/home"),
    ('"he\'$PWD\'"', "he'/home'"),
    ('"$PWD"', "/home"),
    ("'$PWD'", "$PWD"),
    ("'\\$PWD'", "\\$PWD"),
    ("'\"hello\"'", '"hello"'),
    ("'he\\$PWD'", "he\\$PWD"),
    ("he${PWD", "error"),
    ("he${PWD:=000}xx", "error"),
    ("he${PWD=000}xx", "error"),
    ("he${PWD:+${PWD}:}xx", "he/home:xx"),
    ("he${XXX:-\\$PWD:}xx", "he$PWD:xx"),
    ("he${XXX:-\\${PWD}z}xx", "he${PWDz}xx"),
    ("안녕하세요", "안녕하세요"),
    ("안'녕'하세요", "안녕하세요"),
    ("안'녕하세요", "error"),
    ("안녕\\'하세요", "안녕'하세요"),
    ("$KOREAN", "한국어"),
    ("안녕$KOREAN", "안녕한국어"),
    ("${{aaa}", "error"),
    ("${aaa}}", "}"),
    ("${aaa", "error"),
    ("${aaa}}}", "}}"),
    ("${aaa}x}", "x}"),
    ("${aaa}x${bbb}", "x"),
    ("$$", ""),
    ("a b  c", "a b  c"),
]


@pytest.mark.parametrize(("word", "expected"), WORDS)
def test_process_word(word, expected):
    if expected == "error":
        with pytest.raises(DockerfileError):
            process_word(word, ENV)
    else:
        assert process_word(word, ENV) == expected


# Pattern modifiers: TestProcessWithMatches in lex_test.go.
MODIFIERS = [
    ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", {"FOO": "()[]{}^$.*?|\\x"}, "x"),
    ("${FOO%%\\**}", {"FOO": "xx**"}, "xx"),
    ("${FOO#*x*y}", {"FOO": "xxyy"}, "y"),
    ("${FOO#*}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": "x"}, "xyy"),
    ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy"),
    ("${FOO#}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO##*x}", {"FOO": "xxyy"}, "yy"),
    ("${FOO##}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO#?\\?}", {"FOO": "???y"}, "?y"),
    ("${ABC:-.}${FOO%x}${ABC:-.}", {"FOO": "xxyy"}, ".xxyy."),
    ("${FOO%%\\**\\*}", {"FOO": "a***yy*"}, "a"),
    ("${FOO%}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO%%$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy"),
    ("${FOO%y*}", {"FOO": "axyzy"}, "axyz"),
    ("${FOO%%y*}", {"FOO": "axyzy"}, "ax"),
    ("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", {"FOO": "/foo*/*/*.txt", "NEEDLE": "\\*/"},
     "/foo.*/*.txt - /foo..*.txt"),
    ("${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", {"FOO": "/tmp/tmp/bar.txt", "NEEDLE": "/tmp"},
     "/tmp/bar.txt - /bar.txt"),
    ("${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
     {"FOO": "/a/foo/b/c.txt", "NEEDLE": "/?/", "REPLACEMENT": "/"}, "/foo/b/c.txt - /foo/c.txt"),
    ("${FOO/$NEEDLE/$REPLACEMENT}", {"FOO": "http://google.de", "NEEDLE": "http://", "REPLACEMENT": "https://"},
     "https://google.de"),
    ("${FOO//\\//\\/}", {"FOO": "/tmp/foo.txt"}, "\\/tmp\\/foo.txt"),
    ("${FOO/$BAR/ww}", {"FOO": "xxyy", "BAR": ""}, "wwxxyy"),
    ("${FOO///}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO///}", {}, ""),
    ("${FOO//x/}", {"FOO": "xaxbx"}, "ab"),
    ("something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
     {"VERSION": "v1.2.3", "TARGETOS": "linux", "TARGETARCH": "arm", "TARGETVARIANT": "v7"},
     "something-v1.2.3.linux-arm-v7.tar.gz"),
    ("something-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}",
     {"TARGETARCH": "amd64", "TARGETVARIANT": ""}, "something-amd64"),
]


@pytest.mark.parametrize(("word", "env", "expected"), MODIFIERS)
def test_modifiers(word, env, expected):
    assert process_word(word, env) == expected


@pytest.mark.parametrize("word", ["${FOO//ww}", "${FOO//}", "${FOO=aaa}", "${FOO=:aaa}", "${FOO=}",
                                  "${FOO#\\x}", "${BAR:?bbb}", "${BAZ?ccc}"])
def test_modifier_errors(word):
    with pytest.raises(DockerfileError):
        process_word(word, {"FOO": "xxyy", "BAR": ""})


def test_mandatory_messages():
    env = {"ARG": "x"}
    with pytest.raises(DockerfileError) as err:
        process_word("${VAR:?message here$ARG}", env)
    assert str(err.value) == 'failed to process "${VAR:?message here$ARG}": VAR: message herex'
    with pytest.raises(DockerfileError, match="VAR: is not allowed to be unset"):
        process_word("${VAR?}", env)
    with pytest.raises(DockerfileError, match="VAR: is not allowed to be empty"):
        process_word("${VAR:?}", {"VAR": ""})
    assert process_word("${VAR?}", {"VAR": ""}) == ""


def test_error_wording():
    with pytest.raises(DockerfileError) as err:
        process_word('a"b', {})
    assert str(err.value) == ('failed to process "a\\"b": unexpected end of statement while looking '
                              "for matching double-quote")
    with pytest.raises(DockerfileError, match="syntax error: bad substitution"):
        process_word("${:x}", {})
    with pytest.raises(DockerfileError, match="syntax error: missing '}'"):
        process_word("${X:-abc", {})
    with pytest.raises(DockerfileError, match=r"unsupported modifier \(:=\) in substitution"):
        process_word("${X:=abc}", {})


# Splitting into words: wordsTest.
SPLITS = [
    ("hello", ["hello"]),
    ("hello world", ["hello", "world"]),
    ("  hello   world  ", ["hello", "world"]),
    ('"hello world"', ["hello world"]),
    ("'hello world'", ["hello world"]),
    ("hello\\ world", ["hello world"]),
    ('hel"lo wo"rld', ["hello world"]),
    ("$VARS", ["a", "b"]),
    ('"$VARS"', ["a b"]),
    ("x$VARS y", ["xa", "b", "y"]),
    ('""', []),
    ('a "" b', ["a", "b"]),
    ("$EMPTY", []),
]


@pytest.mark.parametrize(("word", "expected"), SPLITS)
def test_process_words(word, expected):
    assert process_words(word, {"VARS": "a b", "EMPTY": ""}) == expected


def test_backtick_escape():
    assert process_word("a`$X", {"X": "1"}, escape="`") == "a$X"
    assert process_word("c:\\windows\\$X", {"X": "1"}, escape="`") == "c:\\windows\\1"
    assert process_word('"a`"b"', {}, escape="`") == 'a"b'


def test_matches_and_referenced_names():
    result = Lexer().process("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", {"FOO": "xxx", "BAR": ""})
    assert result.value == "xxx  ccc"
    assert result.matched == {"FOO", "BAR"}
    assert result.unmatched == {"BAZ"}
    assert referenced_names("$A/${B:-$C}'$D'") == {"A", "B", "C"}


def test_raw_options():
    raw = Lexer(raw_quotes=True, raw_escapes=True, skip_unset=True)
    assert raw.process("a 'b c' \"$X\" $Y \\z", {"X": "1"}).words == ["a", "'b c'", '"1"', "$Y", "\\z"]
    assert Lexer(skip_quotes=True).process("say \"$X\" 'it'", {"X": "1"}).value == "say \"1\" 'it'"


def test_go_quote():
    assert go_quote('a"b\\c\n') == '"a\\"b\\\\c\\n"'
