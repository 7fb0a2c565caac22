#!/usr/bin/env python3
"""Checks a container's process (/proc/<pid>/status) against its pod spec (JSON on stdin).

  kubectl get pod P -o json | procstatus.py CONTAINER /proc/<pid>/status [--image-user 65532:65532]

User and group: the container's runAsUser/runAsGroup, else the pod's, else the image's USER (a uid without a
group: its primary group in the image). Capabilities (not
privileged): the runtime's default set (containerd's), minus `drop` (ALL = everything), plus `add`; that is the
bounding set exactly, and for uid 0 also the permitted and effective sets. A non-root process never holds more
than that in any set (Kubernetes does not raise ambient capabilities). allowPrivilegeEscalation false means
NoNewPrivs 1; a RuntimeDefault seccomp profile means Seccomp 2 (filter). With --effective, the effective set
must be exactly the given capabilities (a non-root relay raises them itself). Prints a one-line summary; exit 1 with
the differences otherwise.
"""
import argparse
import json
import sys

CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
        "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
        "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
        "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
        "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
        "CHECKPOINT_RESTORE"]
# containerd's default capabilities for a container that drops nothing.
RUNTIME_DEFAULT = {"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
                   "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"}


def names(mask):
    return {c for i, c in enumerate(CAPS) if mask >> i & 1}


def norm(cap):
    cap = cap.upper()
    return cap[4:] if cap.startswith("CAP_") else cap


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("container")
    ap.add_argument("status")
    ap.add_argument("--image-user", default="65532:65532")
    ap.add_argument("--effective", help="the effective set must be exactly these (comma-separated, e.g. "
                    "NET_BIND_SERVICE,NET_ADMIN): what the relay raised from its file capabilities")
    a = ap.parse_args()
    pod = json.load(sys.stdin)
    spec = pod["spec"]
    c = next(x for x in spec["containers"] if x["name"] == a.container)
    sc, psc = c.get("securityContext") or {}, spec.get("securityContext") or {}
    img_uid, _, img_gid = a.image_user.partition(":")
    uid = sc.get("runAsUser", psc.get("runAsUser", int(img_uid)))
    # Without runAsGroup: the image's USER group for the image's user, else the uid's primary group in the image's
    # /etc/passwd (e2e/k8s/image.py writes distroless' accounts), else 0, as the runtime does.
    primary = {0: 0, 65532: 65532, 65534: 65534}
    default_gid = int(img_gid) if img_gid and uid == int(img_uid) else primary.get(uid, 0)
    gid = sc.get("runAsGroup", psc.get("runAsGroup", default_gid))

    st = {}
    for line in open(a.status):
        k, _, v = line.partition(":")
        st[k] = v.strip()
    got = {k: names(int(st[k], 16)) for k in ("CapBnd", "CapPrm", "CapEff", "CapAmb")}
    p_uid = [int(x) for x in st["Uid"].split()]
    p_gid = [int(x) for x in st["Gid"].split()]
    errs = []
    if any(u != uid for u in p_uid):
        errs.append(f"uid {p_uid}, pod spec says {uid}")
    if any(g != gid for g in p_gid):
        errs.append(f"gid {p_gid}, pod spec says {gid}")
    if sc.get("privileged"):
        summary = "privileged"
    else:
        caps = sc.get("capabilities") or {}
        drop = {norm(x) for x in caps.get("drop") or []}
        want = set() if "ALL" in drop else RUNTIME_DEFAULT - drop
        want |= {norm(x) for x in caps.get("add") or []}
        if got["CapBnd"] != want:
            errs.append(f"bounding set {sorted(got['CapBnd'])}, pod spec says {sorted(want)}")
        for k in ("CapPrm", "CapEff") if uid == 0 else ():
            if got[k] != want:
                errs.append(f"{k} {sorted(got[k])}, pod spec says {sorted(want)}")
        for k in ("CapPrm", "CapEff", "CapAmb"):
            if not got[k] <= want:
                errs.append(f"{k} holds {sorted(got[k] - want)} beyond the pod spec's {sorted(want)}")
        if a.effective is not None:
            eff = {norm(x) for x in a.effective.split(",") if x}
            if got["CapEff"] != eff:
                errs.append(f"effective set {sorted(got['CapEff'])}, want exactly {sorted(eff)}")
        summary = "caps " + ",".join(sorted(want)) + f" (effective {','.join(sorted(got['CapEff'])) or 'none'})"
    if sc.get("allowPrivilegeEscalation") is False and st.get("NoNewPrivs") != "1":
        errs.append(f"NoNewPrivs {st.get('NoNewPrivs')} with allowPrivilegeEscalation false")
    prof = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
    if prof == "RuntimeDefault" and st.get("Seccomp") != "2":
        errs.append(f"Seccomp {st.get('Seccomp')} with a RuntimeDefault profile")
    if errs:
        print("; ".join(errs))
        sys.exit(1)
    print(f"uid {uid} gid {gid} {summary} NoNewPrivs {st.get('NoNewPrivs')} Seccomp {st.get('Seccomp')}")


if __name__ == "__main__":
    main()
