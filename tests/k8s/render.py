"""Renders the llmos Helm chart (deploy/helm/llmos) without Helm.

Helm is a Go program that none of the package registries reachable here ships, so the test
suite renders the chart with this renderer of the subset of Helm's template language that
the chart uses, with Helm's semantics:

- actions `{{ ... }}` with `{{-` / `-}}` whitespace trimming, and `{{/* comments */}}`;
- values `.Values.a.b`, `.Release.Name`, `.Release.Namespace`, `.Chart.Name`,
  `.Chart.Version`, `.Chart.AppVersion`, variables `$name`, string and number literals;
- pipelines `X | f a` (= `f a X`) with the functions quote, default, toYaml, toJson,
  nindent, indent, b64enc, not, required;
- `if` / `else` / `end` (Go's truthiness: empty string, 0, false, empty list or map are
  false) and `range $k, $v := MAP` (keys in sorted order, as Go's templates iterate maps).

Anything else (another function, `include`, `tpl`, `with`, ...) is an error naming it, so the
chart cannot use a construct this renderer would render wrongly: keep the chart to this list.
"""

import base64
import json
import re
import sys
from pathlib import Path

import yaml

ACTION = re.compile(r"(\{\{-?)(.*?)(-?\}\})", re.S)


class TemplateError(Exception):
    pass


def tokens(text):
    """Splits a template into ('text', s) and ('action', s) items, applying trim markers."""
    out = []
    pos = 0
    for m in ACTION.finditer(text):
        chunk = text[pos:m.start()]
        if m.group(1) == "{{-":
            chunk = chunk.rstrip(" \t\r\n")
        out.append(["text", chunk])
        out.append(["action", m.group(2).strip(), m.group(3) == "-}}"])
        pos = m.end()
    out.append(["text", text[pos:]])
    # `-}}` trims the whitespace that follows.
    for i, t in enumerate(out):
        if t[0] == "action" and t[2] and i + 1 < len(out):
            out[i + 1][1] = out[i + 1][1].lstrip(" \t\r\n")
    return [(t[0], t[1]) for t in out if t[0] == "action" or t[1]]


def parse(items, i=0, stop=()):
    """Builds a tree: ('text', s), ('expr', s), ('if', cond, then, else), ('range', k, v, expr, body)."""
    body = []
    while i < len(items):
        kind, s = items[i]
        i += 1
        if kind == "text":
            body.append(("text", s))
            continue
        if s.startswith("/*"):
            continue
        word = s.split(None, 1)[0] if s else ""
        if word in stop:
            return body, i, word
        if word == "if":
            then, i, ended = parse(items, i, ("else", "end"))
            other = []
            if ended == "else":
                other, i, _ = parse(items, i, ("end",))
            body.append(("if", s[2:].strip(), then, other))
        elif word == "range":
            m = re.fullmatch(r"range\s+\$(\w+)\s*,\s*\$(\w+)\s*:=\s*(.+)", s)
            if not m:
                raise TemplateError(f"unsupported range form {{{{ {s} }}}}: use range $k, $v := MAP")
            inner, i, _ = parse(items, i, ("end",))
            body.append(("range", m.group(1), m.group(2), m.group(3), inner))
        elif word in ("else", "end", "with", "define", "template", "block", "include", "tpl"):
            raise TemplateError(f"unsupported action {{{{ {s} }}}}")
        else:
            body.append(("expr", s))
    if stop:
        raise TemplateError("an if or range has no {{ end }}")
    return body, i, None


def split_args(s):
    """Splits a command into arguments: quoted strings, parenthesised groups, words."""
    out = []
    for m in re.finditer(r'"(?:\\.|[^"\\])*"|\([^()]*\)|[^\s]+', s):
        out.append(m.group(0))
    return out


def go_str(v):
    """How Go's templates print a value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "<no value>"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def truthy(v):
    return not (v is None or v is False or v == 0 or v == "" or v == [] or v == {})


def to_yaml(v):
    return yaml.safe_dump(v, default_flow_style=False, sort_keys=True).rstrip("\n")


def apply(fn, args, piped, env):
    vals = [value(a, env) for a in args]
    if piped is not None:
        vals.append(piped)
    one = lambda: vals[-1] if vals else None  # noqa: E731
    if fn == "quote":
        return json.dumps(go_str(one()))
    if fn == "default":
        return vals[-1] if len(vals) > 1 and truthy(vals[-1]) else vals[0]
    if fn == "toYaml":
        return to_yaml(one())
    if fn == "toJson":
        return json.dumps(one(), separators=(",", ":"))
    if fn in ("nindent", "indent"):
        pad = " " * int(vals[0])
        text = "\n".join(pad + line if line else line for line in go_str(vals[1]).split("\n"))
        return "\n" + text if fn == "nindent" else text
    if fn == "b64enc":
        return base64.b64encode(go_str(one()).encode()).decode()
    if fn == "not":
        return not truthy(one())
    if fn == "required":
        if not truthy(vals[-1]):
            raise TemplateError(f"required value missing: {vals[0]}")
        return vals[-1]
    raise TemplateError(f"unsupported function {fn!r} (supported: quote, default, toYaml, toJson, nindent, indent, b64enc, not, required)")


def value(tok, env):
    if tok.startswith("("):
        return pipeline(tok[1:-1], env)
    if tok.startswith('"'):
        return json.loads(tok)
    if re.fullmatch(r"-?\d+", tok):
        return int(tok)
    if tok in ("true", "false"):
        return tok == "true"
    if tok.startswith("$"):
        if tok[1:] not in env["vars"]:
            raise TemplateError(f"undefined variable {tok}")
        return env["vars"][tok[1:]]
    if tok.startswith("."):
        cur = env["root"]
        for part in tok[1:].split("."):
            if not isinstance(cur, dict):
                return None
            cur = cur.get(part)
        return cur
    raise TemplateError(f"unsupported token {tok!r}")


def pipeline(s, env):
    result = None
    for n, stage in enumerate(s.split("|")):
        args = split_args(stage.strip())
        if not args:
            raise TemplateError(f"empty pipeline stage in {s!r}")
        head = args[0]
        is_fn = re.fullmatch(r"[A-Za-z]\w*", head) and head not in ("true", "false")
        if n == 0 and not is_fn:
            if len(args) != 1:
                raise TemplateError(f"cannot read {stage!r}")
            result = value(head, env)
        elif is_fn:
            result = apply(head, args[1:], result if n > 0 else None, env)
        else:
            raise TemplateError(f"cannot read {stage!r}")
    return result


def run(tree, env, out):
    for node in tree:
        kind = node[0]
        if kind == "text":
            out.append(node[1])
        elif kind == "expr":
            out.append(go_str(pipeline(node[1], env)))
        elif kind == "if":
            run(node[2] if truthy(pipeline(node[1], env)) else node[3], env, out)
        elif kind == "range":
            m = pipeline(node[3], env) or {}
            if not isinstance(m, dict):
                raise TemplateError(f"range over a non-map {node[3]!r}")
            for k in sorted(m):
                inner = dict(env, vars=dict(env["vars"], **{node[1]: k, node[2]: m[k]}))
                run(node[4], inner, out)


def render_text(text, root):
    tree, _, _ = parse(tokens(text))
    out = []
    run(tree, {"root": root, "vars": {}}, out)
    return "".join(out)


def merge(base, over):
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v
    return base


def render(chart, overrides=None, release="llmos", namespace="default"):
    """Renders every template of the chart; returns {template name: list of documents}."""
    chart = Path(chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    values = merge(yaml.safe_load((chart / "values.yaml").read_text()) or {}, overrides or {})
    root = {
        "Values": values,
        "Release": {"Name": release, "Namespace": namespace, "Service": "Helm"},
        "Chart": {"Name": meta["name"], "Version": meta["version"], "AppVersion": meta.get("appVersion")},
    }
    out = {}
    for path in sorted((chart / "templates").glob("*.yaml")):
        try:
            text = render_text(path.read_text(), root)
        except TemplateError as e:
            raise TemplateError(f"{path}: {e}") from None
        out[path.name] = [d for d in yaml.safe_load_all(text) if d]
    return out


if __name__ == "__main__":
    docs = render(sys.argv[1] if len(sys.argv) > 1 else "deploy/helm/llmos")
    for name, ds in docs.items():
        for d in ds:
            print(f"---\n# Source: {name}\n{yaml.safe_dump(d, sort_keys=False)}", end="")
