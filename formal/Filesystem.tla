----------------------------- MODULE Filesystem -----------------------------
(***************************************************************************)
(* The root filesystem, mirrored by nucleus/machines/filesystem.py.       *)
(* The mount plan is data: fs_total operations carried out in order, then *)
(* pivot_root and the old root detached. With the chroot fallback allowed *)
(* (agent mode only), a failed pivot_root becomes a chroot.               *)
(* Every mount lives in the container's private mount namespace, which    *)
(* the kernel tears down with its last process: failure needs no unmount. *)
(* In production the sealed root's mounts are audited before anything    *)
(* runs; a mismatch is fatal.                                              *)
(***************************************************************************)
EXTENDS Naturals

VARIABLES
    \* @type: Str;
    fs_phase,
    \* @type: Int;
    fs_mounted,
    \* @type: Int;
    fs_total,
    \* @type: Bool;
    fs_allowChroot,
    \* @type: Bool;
    fs_chrooted,
    \* @type: Bool;
    fs_audit,
    \* @type: Bool;
    fs_audited,
    \* @type: { m: Str, name: Str, arg: Str };
    event

\* The largest plan checked (real plans are longer; the behaviour does not depend on length).
MaxMounts == 3
Phases == {"idle", "mounting", "pivoting", "chrooting", "detaching", "auditing", "sealed", "failed"}
StepNames == {"mount", "pivot", "chroot", "detach", "audit"}

fs_vars == <<fs_phase, fs_mounted, fs_total, fs_allowChroot, fs_chrooted, fs_audit, fs_audited>>
vars == <<fs_phase, fs_mounted, fs_total, fs_allowChroot, fs_chrooted, fs_audit, fs_audited, event>>

FsInit ==
    /\ fs_phase = "idle"
    /\ fs_mounted = 0
    /\ fs_total \in 0..MaxMounts
    /\ fs_allowChroot \in BOOLEAN
    /\ fs_chrooted = FALSE
    /\ fs_audit \in BOOLEAN
    /\ fs_audited = FALSE

Expected ==
    CASE fs_phase = "mounting" -> "mount"
      [] fs_phase = "pivoting" -> "pivot"
      [] fs_phase = "chrooting" -> "chroot"
      [] fs_phase = "detaching" -> "detach"
      [] fs_phase = "auditing" -> "audit"
      [] OTHER -> "none"

\* After the root is sealed (pivot and detach, or chroot): audit first where asked.
Sealing == IF fs_audit THEN "auditing" ELSE "sealed"

Begin ==
    /\ fs_phase = "idle"
    /\ fs_phase' = IF fs_total = 0 THEN "pivoting" ELSE "mounting"
    /\ UNCHANGED <<fs_mounted, fs_total, fs_allowChroot, fs_chrooted, fs_audit, fs_audited>>

Done(s) ==
    /\ Expected = s
    /\ \/ /\ s = "mount"
          /\ fs_mounted' = fs_mounted + 1
          /\ fs_phase' = IF fs_mounted + 1 < fs_total THEN "mounting" ELSE "pivoting"
          /\ UNCHANGED <<fs_total, fs_allowChroot, fs_chrooted, fs_audit, fs_audited>>
       \/ /\ s = "pivot"
          /\ fs_phase' = "detaching"
          /\ UNCHANGED <<fs_mounted, fs_total, fs_allowChroot, fs_chrooted, fs_audit, fs_audited>>
       \/ /\ s = "chroot"
          /\ fs_phase' = Sealing
          /\ fs_chrooted' = TRUE
          /\ UNCHANGED <<fs_mounted, fs_total, fs_allowChroot, fs_audit, fs_audited>>
       \/ /\ s = "detach"
          /\ fs_phase' = Sealing
          /\ UNCHANGED <<fs_mounted, fs_total, fs_allowChroot, fs_chrooted, fs_audit, fs_audited>>
       \/ /\ s = "audit"
          /\ fs_phase' = "sealed"
          /\ fs_audited' = TRUE
          /\ UNCHANGED <<fs_mounted, fs_total, fs_allowChroot, fs_chrooted, fs_audit>>

Fail(s) ==
    /\ Expected = s
    /\ fs_phase' = IF s = "pivot" /\ fs_allowChroot THEN "chrooting" ELSE "failed"
    /\ UNCHANGED <<fs_mounted, fs_total, fs_allowChroot, fs_chrooted, fs_audit, fs_audited>>

Ev(name, arg) == event' = [m |-> "fs", name |-> name, arg |-> arg]

Init == FsInit /\ event = [m |-> "", name |-> "", arg |-> ""]

Next ==
    \/ Begin /\ Ev("Begin", "")
    \/ \E s \in StepNames : Done(s) /\ Ev("Done", s)
    \/ \E s \in StepNames : Fail(s) /\ Ev("Fail", s)

Spec == Init /\ [][Next]_vars

(* Invariants: the same names as in the machine. *)
TypeOK ==
    /\ fs_phase \in Phases
    /\ fs_mounted \in 0..fs_total
    /\ fs_total \in 0..MaxMounts
    /\ fs_allowChroot \in BOOLEAN
    /\ fs_chrooted \in BOOLEAN
    /\ fs_audit \in BOOLEAN
    /\ fs_audited \in BOOLEAN

PivotOnlyAfterPlan ==
    fs_phase \in {"pivoting", "chrooting", "detaching", "auditing", "sealed"} => fs_mounted = fs_total
ChrootOnlyIfAllowed == fs_chrooted => fs_allowChroot
ChrootOnlyWhenSealed == fs_chrooted => fs_phase \in {"auditing", "sealed", "failed"}
MountsOnlyWhileMounting == fs_phase = "idle" => fs_mounted = 0
SealedMeansAudited == (fs_phase = "sealed" /\ fs_audit) => fs_audited
AuditedOnlyIfAsked == fs_audited => fs_audit

Inv ==
    /\ TypeOK /\ PivotOnlyAfterPlan /\ ChrootOnlyIfAllowed /\ ChrootOnlyWhenSealed
    /\ MountsOnlyWhileMounting /\ SealedMeansAudited /\ AuditedOnlyIfAsked

(* Temporal: a sealed root stays sealed. *)
SealedStays == [][fs_phase = "sealed" => fs_phase' = "sealed"]_vars
=============================================================================
