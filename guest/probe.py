# fabrik guest probe, python3 (>= 3.9) fallback for VMs without bun. Same contract as guest/probe.js
# (src/vm/probe-schema.ts): ProbeRequest JSON on stdin -> one ProbeResponse JSON line on stdout, exit 0.
# Runs as `python3 guest/probe.py [--serve]` or `python3 -c <this text> [--serve]` (FABRIK_PROBE_SERVE=1 also
# serves). Stdlib only. Differences from the bun probe: the stdlib sqlite3 may predate octet_length()
# (Debian 12: SQLite 3.40), so max_response_text_bytes, max_error_json_bytes and oversized_values are null and
# response_text is never touched; error_json is read as a prefix through the blob API (python >= 3.11), else
# with substr(). DBs are opened read-only exactly as the bun probe does (readonly_shm / immutable / mode=ro).
import json
import os
import re
import sys
import time

try:
    import sqlite3
except Exception as _e:  # python3 without its sqlite3 module
    sqlite3 = None
    SQLITE_IMPORT_ERROR = str(_e)
from urllib.parse import quote

V = 1
CAP_FILE = 64 * 1024
LOG_TAIL = 256 * 1024
ERR_READ_MAX = 1024 * 1024
MAX_ERRORS = 20
MAX_SAFE = 2 ** 53 - 1
HB_FIELDS = [("v", "int"), ("ts_ms", "ms"), ("seq", "int"), ("phase", 40), ("host_run_id", "int"),
             ("smithers_run_id", 200), ("launcher_pid", "int"), ("child_pid", "int"), ("engine_pid", "int"),
             ("engine_version", 100), ("interval_s", "num"), ("exit_code", "int")]
RUN_COLS = ["run_id", "status", "workflow_name", "workflow_path", "created_at_ms", "started_at_ms",
            "finished_at_ms", "heartbeat_at_ms", "runtime_owner_id", "error_json"]
MODERN_COLS = ["heartbeat_at_ms", "runtime_owner_id"]
NODE_COLS = ["run_id", "node_id", "iteration", "state", "last_attempt", "updated_at_ms", "label"]
ATT_COLS = ["run_id", "node_id", "iteration", "attempt", "state", "started_at_ms", "finished_at_ms", "error_json",
            "response_text"]
RETRY_RE = re.compile(r"unable to open|locked|readonly|read-only|disk I/O|protocol", re.I)


# ---------- small helpers ----------
def cap(s, n):
    """Cap a string at n UTF-16 code units (the host counts like JavaScript)."""
    if s is None:
        return None
    if isinstance(s, (bytes, bytearray, memoryview)):
        s = bytes(s).decode("utf-8", "replace")
    elif not isinstance(s, str):
        s = str(s)
    if 2 * len(s) <= n:
        return s
    u = 0
    for i, ch in enumerate(s):
        u += 2 if ord(ch) > 0xFFFF else 1
        if u > n:
            return s[:i]
    return s


def as_int(x):
    if isinstance(x, bool):
        return None
    if isinstance(x, float) and x.is_integer():
        x = int(x)
    if isinstance(x, int) and -MAX_SAFE <= x <= MAX_SAFE:
        return x
    return None


def as_ms(x):
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        return None
    return int(x) if x >= 0 else None


def add_err(errs, msg):
    if len(errs) < MAX_ERRORS:
        errs.append(cap(str(msg), 500))


def err_msg(e):
    return cap(str(e) or e.__class__.__name__, 300)


def stat_safe(p):
    try:
        return os.stat(p)
    except Exception:
        return None


def is_file(p):
    try:
        return os.path.isfile(p)
    except Exception:
        return False


def is_dir(p):
    try:
        return os.path.isdir(p)
    except Exception:
        return False


def read_capped(p, mx, from_end=False):
    """At most mx bytes of a file: (bytes, whole size), or None when absent."""
    try:
        f = open(p, "rb")
    except FileNotFoundError:
        return None
    with f:
        size = os.fstat(f.fileno()).st_size
        if from_end:
            n = min(size, mx)
            f.seek(size - n)
            return f.read(n), size
        data = f.read(mx)  # /proc files report size 0: read up to mx whatever the size says
        return data, max(size, len(data))


def mtime_ms(st):
    return as_ms(st.st_mtime_ns // 1000000)


# ---------- processes ----------
def pid_fact(pid):
    pid = as_int(pid)
    if pid is None or pid <= 0 or pid > 0x7FFFFFFF:
        return None
    try:
        os.kill(pid, 0)
        alive = True
    except PermissionError:
        alive = True
    except Exception:
        alive = False
    state = None
    cmdline = None
    if alive:
        try:
            with open("/proc/%d/stat" % pid, "rb") as f:
                st = f.read().decode("latin-1")
            rest = st[st.rfind(")") + 1:].split()
            if rest:
                state = rest[0][:4]
        except Exception:
            pass
        try:
            r = read_capped("/proc/%d/cmdline" % pid, 4096)
            c = r[0].decode("utf-8", "replace").replace("\0", " ").strip() if r else ""
            cmdline = cap(c, 200) if c else None
        except Exception:
            pass
    return {"pid": pid, "alive": alive, "state": state, "cmdline": cmdline}


def read_pid(p):
    r = read_capped(p, 4096)
    if r is None:
        return None
    t = r[0].decode("utf-8", "replace").strip()
    if re.match(r"^[0-9]{1,10}$", t) and int(t) > 0:
        return int(t)
    return "garbage"


def owner_pid(owner):
    m = re.match(r"^pid:([0-9]{1,10}):", owner) if isinstance(owner, str) else None
    return int(m.group(1)) if m else None


# ---------- control dir ----------
def parse_heartbeat(text):
    try:
        j = json.loads(text)
    except Exception:
        return None, "not JSON"
    if not isinstance(j, dict):
        return None, "not a JSON object"
    hb = {}
    for k, t in HB_FIELDS:
        x = j.get(k)
        if t == "int":
            hb[k] = as_int(x)
        elif t == "ms":
            hb[k] = as_int(x) if as_int(x) is not None and x >= 0 else None
        elif t == "num":
            ok = isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and abs(x) != float("inf")
            hb[k] = (as_int(x) if as_int(x) is not None else x) if ok else None
        else:
            hb[k] = cap(x, t) if isinstance(x, str) else None
    return hb, None


def run_sh_engine(text):
    m = re.search(r"""^[ \t]*(?:export[ \t]+)?ENGINE_VERSION=(?:'([^'\n]*)'|"([^"\n]*)"|([^\s;#]+))""", text, re.M)
    if m and (m.group(1) or m.group(2) or m.group(3)):
        return cap(m.group(1) or m.group(2) or m.group(3), 200)
    m = re.search(r"""smithers-orchestrator@([^\s'"`;|&)]+)""", text)
    if m:
        return cap(m.group(1), 200)
    m = re.search(r"github:[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+#[A-Za-z0-9_./-]+", text)
    return cap(m.group(0), 200) if m else None


def control_facts(d, errs):
    f = {"exists": is_dir(d), "heartbeat": None, "heartbeat_error": None, "heartbeat_mtime_ms": None,
         "launcher": None, "child": None, "engine": None, "exit_code": None, "exit_code_garbage": False,
         "log_size_bytes": None, "log_mtime_ms": None, "log_blob_too_big": False, "run_sh_engine": None}
    if not f["exists"]:
        f["heartbeat_error"] = "control dir missing"
        return f

    def step(what, fn):
        try:
            fn()
        except Exception as e:
            add_err(errs, "%s: %s" % (what, err_msg(e)))

    def heartbeat():
        p = os.path.join(d, "heartbeat.json")
        st = stat_safe(p)
        if st is None:
            f["heartbeat_error"] = "missing"
            return
        f["heartbeat_mtime_ms"] = mtime_ms(st)
        if not os.path.isfile(p):
            f["heartbeat_error"] = "not a file"
        elif st.st_size > CAP_FILE:
            f["heartbeat_error"] = "too large (%d bytes)" % st.st_size
        else:
            r = read_capped(p, CAP_FILE)
            f["heartbeat"], f["heartbeat_error"] = parse_heartbeat(r[0].decode("utf-8", "replace") if r else "")

    step("heartbeat.json", heartbeat)
    hb = f["heartbeat"] or {}

    def pid_of(fname, hb_field, key):
        def fn():
            pid = read_pid(os.path.join(d, fname))
            if pid == "garbage":
                add_err(errs, "%s: not a pid" % fname)
                pid = None
            if pid is None:
                pid = hb.get(hb_field)
            f[key] = pid_fact(pid)
        step(fname, fn)

    pid_of("launcher.pid", "launcher_pid", "launcher")
    pid_of("smithers.pid", "child_pid", "child")
    pid_of("engine.pid", "engine_pid", "engine")

    def exit_code():
        r = read_capped(os.path.join(d, "exit_code"), 4096)
        if r is None:
            return
        t = r[0].decode("utf-8", "replace").strip()
        if re.match(r"^-?[0-9]{1,9}$", t):
            f["exit_code"] = int(t)
        else:
            f["exit_code_garbage"] = True

    step("exit_code", exit_code)

    def log():
        p = os.path.join(d, "reports", "smithers.log")
        st = stat_safe(p)
        if st is None or not os.path.isfile(p):
            return
        f["log_size_bytes"] = st.st_size
        f["log_mtime_ms"] = mtime_ms(st)
        r = read_capped(p, LOG_TAIL, True)
        f["log_blob_too_big"] = bool(r) and b"string or blob too big" in r[0]

    step("reports/smithers.log", log)

    def run_sh():
        r = read_capped(os.path.join(d, "run.sh"), CAP_FILE)
        if r:
            f["run_sh_engine"] = run_sh_engine(r[0].decode("utf-8", "replace"))

    step("run.sh", run_sh)
    return f


# ---------- DB location ----------
def db_candidates(d):
    out = []
    sdir = os.path.join(d, ".smithers")
    try:
        names = os.listdir(sdir)
    except Exception:
        names = []
    found = []
    for n in names:
        p = os.path.join(sdir, n)
        if n.endswith(".db") and is_file(p):
            st = stat_safe(p)
            found.append((-(st.st_mtime_ns if st else 0), p))
    found.sort()
    out.extend(p for _, p in found)
    for rel in ("smithers.db", "workflow/smithers.db"):
        p = os.path.join(d, rel)
        if is_file(p):
            out.append(p)
    return out


# ---------- SQLite ----------
def open_modes(p):
    wal = stat_safe(p + "-wal")
    shm = stat_safe(p + "-shm")
    modes = []
    if wal and shm:
        modes.append("mode=ro&readonly_shm=1")
    elif not wal and not stat_safe(p + "-journal"):
        modes.append("mode=ro&immutable=1")
    modes.append("mode=ro")
    return modes


def db_error_text(e):
    msg = err_msg(e)
    name = getattr(e, "sqlite_errorname", "") or ""
    if name.startswith("SQLITE_BUSY") or name.startswith("SQLITE_LOCKED") or "database is locked" in msg:
        return "locked"
    if name == "SQLITE_NOTADB" or "file is not a database" in msg:
        return "not a database"
    if name.startswith("SQLITE_CORRUPT") or "malformed" in msg:
        return "corrupt: " + msg
    return (name + ": " + msg) if name else msg


def with_db(p, fn):
    """fn(conn) in one read transaction on a read-only connection; the next open mode on open/lock trouble."""
    if sqlite3 is None:
        raise RuntimeError("python3 has no sqlite3 module: " + SQLITE_IMPORT_ERROR)
    last = None
    for mode in open_modes(p):
        conn = None
        try:
            uri = "file:" + quote(os.path.abspath(p)) + "?" + mode
            conn = sqlite3.connect(uri, uri=True, timeout=1.0, isolation_level=None, check_same_thread=False)
            conn.text_factory = lambda b: b.decode("utf-8", "replace")
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 1000")
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                try:
                    conn.execute("COMMIT")
                except Exception:
                    pass
        except sqlite3.Error as e:
            last = e
            if not RETRY_RE.search(str(e)):
                break
        finally:
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    pass
    raise last


def cols_of(conn, table):
    return set(r[0] for r in conn.execute("SELECT name FROM pragma_table_info(?)", (table,)))


def col_expr(cols, alias, c):
    return '%s."%s"' % (alias, c) if c in cols else "NULL"


MSG_RE = re.compile(r'"message"\s*:\s*"((?:[^"\\]|\\.)*)"')


def error_message(text, truncated, chars):
    if text is None:
        return None
    if not isinstance(text, str):
        text = cap(text, ERR_READ_MAX)
    if not truncated:
        try:
            j = json.loads(text)
            if isinstance(j, dict) and isinstance(j.get("message"), str):
                return cap(j["message"], chars)
            if isinstance(j, str):
                return cap(j, chars)
        except Exception:
            pass
    else:
        m = MSG_RE.search(text)
        if m:
            try:
                return cap(json.loads('"' + m.group(1) + '"'), chars)
            except Exception:
                pass
    return cap(text, chars)


def read_error_json(conn, table, rowid):
    """(prefix text, truncated) of error_json without loading a huge value when the blob API exists."""
    if rowid is None:
        return None, False
    if hasattr(conn, "blobopen"):
        try:
            with conn.blobopen(table, "error_json", rowid, readonly=True) as b:
                n = len(b)
                data = b.read(min(n, ERR_READ_MAX))
            return data.decode("utf-8", "replace"), n > ERR_READ_MAX
        except Exception:
            pass  # NULL value, WITHOUT ROWID table, ...: fall back to substr()
    row = conn.execute("SELECT substr(error_json, 1, ?) FROM %s WHERE rowid = ?" % table, (ERR_READ_MAX, rowid)).fetchone()
    if row is None or row[0] is None:
        return None, False
    t = row[0] if isinstance(row[0], str) else bytes(row[0]).decode("utf-8", "replace")
    return t, len(t) >= ERR_READ_MAX


def node_sql(S, where, order, extra=""):
    n = lambda c: col_expr(S["nodes"], "n", c)
    if S["att_ok"]:
        a = lambda c: col_expr(S["att"], "a", c)
        join = ("LEFT JOIN _smithers_attempts a ON a.run_id = n.run_id AND a.node_id = n.node_id AND a.iteration = n.iteration"
                " AND a.attempt = (SELECT max(x.attempt) FROM _smithers_attempts x WHERE x.run_id = n.run_id"
                " AND x.node_id = n.node_id AND x.iteration = n.iteration)")
        rowid = "a.rowid"
    else:
        a = lambda c: "NULL"
        join = ""
        rowid = "NULL"
    return ("SELECT n.node_id AS node_id, %s AS iteration, n.state AS state, %s AS last_attempt, %s AS updated_at_ms,"
            " %s AS label, %s AS a_attempt, %s AS a_started, %s AS a_finished, %s AS a_rowid %s"
            " FROM _smithers_nodes n %s WHERE n.run_id = ? %s ORDER BY %s") % (
        n("iteration"), n("last_attempt"), n("updated_at_ms"), n("label"), a("attempt"), a("started_at_ms"),
        a("finished_at_ms"), rowid, extra, join, where, order)


def node_fact(conn, r, chars):
    """A node row joined with its latest attempt (max attempt number: the attempts table is the truth)."""
    la = as_int(r["a_attempt"])
    err = None
    if r["state"] == "failed":
        text, trunc = read_error_json(conn, "_smithers_attempts", r["a_rowid"])
        err = error_message(text, trunc, chars)
    return {"node_id": cap(r["node_id"], 500) or "", "iteration": as_int(r["iteration"]) or 0,
            "state": cap(r["state"], 60) or "", "last_attempt": la if la is not None else as_int(r["last_attempt"]),
            "updated_at_ms": as_ms(r["updated_at_ms"]), "label": cap(r["label"], 500),
            "started_at_ms": as_ms(r["a_started"]), "error": err}


def empty_db_facts(p):
    return {"path": cap(p, 4096), "exists": False, "size_bytes": None, "wal_size_bytes": None, "schema": "unknown",
            "missing_columns": [], "error": None, "run": None, "runs_in_db": None, "by_state": {}, "total_nodes": 0,
            "in_progress": [], "last_failed": None, "max_response_text_bytes": None, "max_error_json_bytes": None,
            "oversized_values": None, "nodes": None, "nodes_truncated": False}


def db_facts(p, run_id, req, errs):
    d = empty_db_facts(p)
    st = stat_safe(p)
    if st is None:
        return d
    d["exists"] = True
    if not os.path.isfile(p):
        d["error"] = "not a regular file"
        return d
    d["size_bytes"] = st.st_size
    wst = stat_safe(p + "-wal")
    d["wal_size_bytes"] = wst.st_size if wst else None
    try:
        with_db(p, lambda conn: read_db(conn, d, run_id, req, errs))
    except Exception as e:
        d["error"] = cap(db_error_text(e), 500)
    return d


def read_db(conn, d, run_id, req, errs):
    S = {"runs": cols_of(conn, "_smithers_runs"), "nodes": cols_of(conn, "_smithers_nodes"),
         "att": cols_of(conn, "_smithers_attempts")}
    if not S["runs"]:
        d["schema"] = "unknown"
        add_err(errs, "no _smithers_runs table in the DB")
        return
    missing = [c for c in RUN_COLS if c not in S["runs"]]
    if not S["nodes"]:
        missing.append("_smithers_nodes")
    else:
        missing.extend("_smithers_nodes." + c for c in NODE_COLS if c not in S["nodes"])
    if not S["att"]:
        missing.append("_smithers_attempts")
    else:
        missing.extend("_smithers_attempts." + c for c in ATT_COLS if c not in S["att"])
    d["missing_columns"] = [cap(c, 100) for c in missing[:50]]
    d["schema"] = "modern" if any(c in S["runs"] for c in MODERN_COLS) else "legacy"
    S["att_ok"] = all(c in S["att"] for c in ("run_id", "node_id", "iteration", "attempt")) and "iteration" in S["nodes"]
    nodes_ok = all(c in S["nodes"] for c in ("run_id", "node_id", "state"))

    d["runs_in_db"] = as_int(conn.execute("SELECT count(*) FROM _smithers_runs").fetchone()[0])
    r = lambda c: col_expr(S["runs"], "r", c)
    sel = "SELECT %s, r.rowid AS rid FROM _smithers_runs r" % ", ".join(
        '%s AS "%s"' % (r(c), c) for c in RUN_COLS if c != "error_json")
    try:
        if run_id is not None:
            row = conn.execute(sel + " WHERE r.run_id = ?", (run_id,)).fetchone()
        else:
            row = conn.execute(sel + " ORDER BY coalesce(%s, %s) DESC, r.run_id DESC LIMIT 1"
                               % (r("started_at_ms"), r("created_at_ms"))).fetchone()
    except sqlite3.OperationalError:  # a WITHOUT ROWID table: no rowid
        sel = sel.replace("r.rowid AS rid", "NULL AS rid")
        row = conn.execute(sel + " WHERE r.run_id = ?", (run_id,)).fetchone() if run_id is not None else conn.execute(
            sel + " ORDER BY coalesce(%s, %s) DESC, r.run_id DESC LIMIT 1" % (r("started_at_ms"), r("created_at_ms"))).fetchone()
    if row is None:
        add_err(errs, ("run %s not found in the DB" % json.dumps(run_id)[:220]) if run_id is not None else "no runs in the DB")
        return
    rid = row["run_id"]
    owner = cap(row["runtime_owner_id"], 300)
    err = None
    if "error_json" in S["runs"]:
        text, trunc = read_error_json(conn, "_smithers_runs", row["rid"])
        err = error_message(text, trunc, req["error_chars"])
    d["run"] = {"run_id": cap(rid, 200) or "", "status": cap(row["status"], 60) or "",
                "workflow_name": cap(row["workflow_name"], 300), "workflow_path": cap(row["workflow_path"], 4096),
                "created_at_ms": as_ms(row["created_at_ms"]), "started_at_ms": as_ms(row["started_at_ms"]),
                "finished_at_ms": as_ms(row["finished_at_ms"]), "heartbeat_at_ms": as_ms(row["heartbeat_at_ms"]),
                "runtime_owner_id": owner, "owner": pid_fact(owner_pid(owner)), "error": err}
    if not nodes_ok:
        return

    total = 0
    for x in conn.execute("SELECT state, count(*) FROM _smithers_nodes WHERE run_id = ? GROUP BY state", (rid,)):
        k = cap("null" if x[0] is None else x[0], 60)
        d["by_state"][k] = d["by_state"].get(k, 0) + x[1]
        total += x[1]
    d["total_nodes"] = total
    start = "a.started_at_ms" if S["att_ok"] and "started_at_ms" in S["att"] else "NULL"
    fin = "a.finished_at_ms" if S["att_ok"] and "finished_at_ms" in S["att"] else "NULL"
    upd = col_expr(S["nodes"], "n", "updated_at_ms")
    chars = req["error_chars"]
    rows = conn.execute(node_sql(S, "AND n.state = 'in-progress'", "coalesce(%s, %s) DESC, n.node_id LIMIT 20" % (start, upd)),
                        (rid,)).fetchall()
    d["in_progress"] = [node_fact(conn, x, chars) for x in rows]
    lf = conn.execute(node_sql(S, "AND n.state = 'failed'", "coalesce(%s, %s) DESC, n.node_id LIMIT 1" % (fin, upd)),
                      (rid,)).fetchone()
    d["last_failed"] = node_fact(conn, lf, chars) if lf is not None else None

    if req["nodes"]:
        if S["att_ok"] and "started_at_ms" in S["att"]:
            first = (", (SELECT min(y.started_at_ms) FROM _smithers_attempts y WHERE y.run_id = n.run_id"
                     " AND y.node_id = n.node_id AND y.iteration = n.iteration) AS first_start")
        else:
            first = ", NULL AS first_start"
        it = col_expr(S["nodes"], "n", "iteration")
        order = "(n.state = 'pending'), (first_start IS NULL), first_start, %s, n.node_id, %s LIMIT ?" % (upd, it)
        rows = conn.execute(node_sql(S, "", order, first), (rid, req["max_nodes"] + 1)).fetchall()
        d["nodes_truncated"] = len(rows) > req["max_nodes"]
        d["nodes"] = [node_fact(conn, x, chars) for x in rows[:req["max_nodes"]]]


# ---------- one run ----------
def probe_run(rr, req):
    errs = []
    key = cap(rr.get("key") if isinstance(rr.get("key"), str) else str(rr.get("key")), 200)
    cd = rr.get("control_dir") if isinstance(rr.get("control_dir"), str) and rr.get("control_dir") else None
    dbp = rr.get("db_path") if isinstance(rr.get("db_path"), str) and rr.get("db_path") else None
    run_id = rr.get("smithers_run_id") if isinstance(rr.get("smithers_run_id"), str) else None
    control = None
    db = None
    try:
        if cd:
            control = control_facts(cd, errs)
        p = dbp
        if cd and (not p or stat_safe(p) is None):
            c = db_candidates(cd)
            if c:
                if p:
                    add_err(errs, "db_path %s is missing; found %s" % (p[:300], c[0][:150]))
                p = c[0]
            elif not p:
                db = empty_db_facts(os.path.join(cd, ".smithers", "*.db"))
                add_err(errs, "no DB found in the control dir (.smithers/*.db, smithers.db, workflow/smithers.db)")
        if p:
            db = db_facts(p, run_id, req, errs)
        elif not cd:
            add_err(errs, "neither control_dir nor db_path given")
    except Exception as e:
        add_err(errs, "probe: " + err_msg(e))
    return {"key": key, "control": control, "db": db, "errors": errs}


# ---------- discovery ----------
def read_meta(d):
    r = read_capped(os.path.join(d, "fabrik-run.json"), CAP_FILE)
    if r is None or r[1] > CAP_FILE:
        return None
    try:
        j = json.loads(r[0].decode("utf-8", "replace"))
    except Exception:
        return None
    if not isinstance(j, dict):
        return None
    m = {}
    if as_int(j.get("host_run_id")) is not None:
        m["host_run_id"] = as_int(j["host_run_id"])
    for k, n in (("smithers_run_id", 200), ("engine_version", 100), ("db_path", 4096), ("workflow", 500)):
        if isinstance(j.get(k), str):
            m[k] = cap(j[k], n)
    return m


def discover(roots):
    out = []
    for root in roots:
        try:
            names = sorted(os.listdir(root))
        except Exception:
            continue
        for name in names:
            if len(out) >= 1000:
                return out
            d = os.path.join(root, name)
            if not is_dir(d):
                continue
            if not (is_file(os.path.join(d, "run.sh")) or is_dir(os.path.join(d, ".smithers")) or is_dir(os.path.join(d, "reports"))):
                continue
            item = {"control_dir": cap(d, 4096), "meta": None, "db_paths": [], "run_ids": [], "workflow_path": None}
            try:
                item["meta"] = read_meta(d)
                dbs = db_candidates(d)
                mp = item["meta"].get("db_path") if item["meta"] else None
                if mp and mp not in dbs and is_file(mp):
                    dbs.insert(0, mp)
                item["db_paths"] = [cap(p, 4096) for p in dbs[:20]]
                if dbs:
                    def read_ids(conn):
                        c = cols_of(conn, "_smithers_runs")
                        if "run_id" not in c:
                            return
                        r = lambda x: col_expr(c, "r", x)
                        rows = conn.execute(
                            "SELECT r.run_id, %s FROM _smithers_runs r ORDER BY coalesce(%s, %s) DESC, r.run_id DESC LIMIT 100"
                            % (r("workflow_path"), r("started_at_ms"), r("created_at_ms"))).fetchall()
                        item["run_ids"] = [cap(x[0], 200) or "" for x in rows]
                        if rows and rows[0][1]:
                            item["workflow_path"] = cap(rows[0][1], 4096)
                    with_db(dbs[0], read_ids)
            except Exception:
                pass
            if not item["workflow_path"]:
                try:
                    wfs = sorted(n for n in os.listdir(os.path.join(d, "workflow")) if re.search(r"\.(tsx|ts|jsx|js|mjs)$", n))
                    if wfs:
                        item["workflow_path"] = cap(os.path.join(d, "workflow", wfs[0]), 4096)
                except Exception:
                    pass
            out.append(item)
    return out


# ---------- request / response ----------
def normalise(raw):
    j = json.loads(raw)
    if not isinstance(j, dict):
        raise ValueError("request is not a JSON object")
    if j.get("v") != V or isinstance(j.get("v"), bool):
        raise ValueError("unsupported probe version %s" % json.dumps(j.get("v")))

    def pos_int(x, dflt, mx):
        x = as_int(x)
        return min(x, mx) if x is not None and x > 0 else dflt

    runs = j.get("runs") if isinstance(j.get("runs"), list) else []
    roots = j.get("discover_roots") if isinstance(j.get("discover_roots"), list) else []
    return {"runs": [r for r in runs[:1000] if isinstance(r, dict)], "nodes": j.get("nodes") is True,
            "max_nodes": pos_int(j.get("max_nodes"), 500, 5000),
            "row_size_warn_bytes": pos_int(j.get("row_size_warn_bytes"), 100 * 1024, MAX_SAFE),
            "discover_roots": [r for r in roots if isinstance(r, str)][:20],
            "error_chars": pos_int(j.get("error_chars"), 500, 4000)}


def handle(raw):
    req = normalise(raw)
    runs = [probe_run(rr, req) for rr in req["runs"]]
    discovered = discover(req["discover_roots"])
    return {"v": V, "tool": "python3", "tool_version": cap(sys.version.split()[0], 100),
            "sqlite_version": cap(sqlite3.sqlite_version if sqlite3 else "none", 40),
            "now_ms": int(time.time() * 1000), "runs": runs, "discovered": discovered}


def dumps(o):
    return json.dumps(o, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def main():
    serve = "--serve" in sys.argv[1:] or os.environ.get("FABRIK_PROBE_SERVE") == "1"
    if not serve:
        raw = sys.stdin.buffer.read().decode("utf-8", "replace")
        try:
            out = dumps(handle(raw))
        except Exception as e:
            sys.stderr.write("fabrik-probe: bad request: %s\n" % err_msg(e))
            sys.exit(2)
        sys.stdout.write(out + "\n")
        sys.stdout.flush()
        return
    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            break
        line = line.decode("utf-8", "replace")
        if not line.strip():
            continue
        try:
            out = dumps(handle(line))
        except Exception as e:
            out = dumps({"v": V, "error": "bad request: " + err_msg(e)})
        sys.stdout.write(out + "\n")
        sys.stdout.flush()


main()
