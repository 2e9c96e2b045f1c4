"""Run one sandbox step from a JSON request and print a JSON answer (for `sandbox_user`).

stdin: {"kind": "userns" | "proot" | ..., "spec": {RunSpec fields, "platform": "linux/arm64",
"mounts": [...]}, "use_subids": true}. stdout: {"ok", "exit_code", "stdout", "stderr",
"stderr_tail", "error_type", "error", "why", "uids", "gids"} where uids/gids are the id map
ranges as [inside, outside, count]. Runs under any Python >= 3.11 with PYTHONPATH set to a
copy of the ocibuild package, as an unprivileged user.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    from ocibuild.errors import OcibuildError, RunFailed
    from ocibuild.oci.platform import Platform
    from ocibuild.sandbox import Mount, RunSpec, choose
    from ocibuild.sandbox.ids import rootless_maps
    from ocibuild.sandbox.namespaces import NamespaceSandbox

    request = json.load(sys.stdin)
    fields = dict(request["spec"])
    if "platform" in fields:
        fields["platform"] = Platform.parse(fields["platform"])
    fields["mounts"] = [Mount(**m) for m in fields.get("mounts", [])]
    chunks = {"stdout": [], "stderr": []}
    fields["output"] = lambda stream, data: chunks[stream].append(data)
    answer = {"ok": False, "exit_code": None, "stderr_tail": "", "error_type": "", "error": ""}
    try:
        sandbox = choose(request.get("kind", "auto"))
        if not request.get("use_subids", True):  # as if the caller had no /etc/subuid range
            ids = rootless_maps(os.geteuid(), os.getegid(), use_subids=False)
            sandbox = NamespaceSandbox("userns", "rootless, root only", userns=True, ids=ids)
        answer["why"] = sandbox.why
        ids = sandbox.ids
        answer["uids"] = [[r.inside, r.outside, r.count] for r in ids.uid.ranges]
        answer["gids"] = [[r.inside, r.outside, r.count] for r in ids.gid.ranges]
        result = sandbox.run(RunSpec(**fields))
        answer.update(ok=True, exit_code=result.exit_code, stderr_tail=result.stderr_tail)
    except RunFailed as e:
        answer.update(exit_code=e.exit_code, stderr_tail=e.stderr_tail, error_type="RunFailed", error=str(e))
    except OcibuildError as e:
        answer.update(error_type=type(e).__name__, error=str(e))
    for stream, parts in chunks.items():
        answer[stream] = b"".join(parts).decode("utf-8", "replace")
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
