------------------------------- MODULE System -------------------------------
(***************************************************************************)
(* One container: the lifecycle, isolation, filesystem, security and      *)
(* resources machines composed, mirrored by nucleus/machines/system.py.   *)
(* Each step is one machine's step; the coupling lives in the guards      *)
(* below. One step touches two machines: the supervisor Lost while a      *)
(* cgroup step was under way abandons that step (it will never report).   *)
(***************************************************************************)
EXTENDS Naturals, Sequences

VARIABLES
    \* @type: Str;
    lc_status,
    \* @type: Str;
    lc_security,
    \* @type: Bool;
    lc_cleaned,
    \* @type: Bool;
    lc_removed,
    \* @type: Bool;
    iso_rootless,
    \* @type: Str;
    iso_phase,
    \* @type: Int;
    iso_done,
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
    \* @type: Bool;
    sec_allowDegraded,
    \* @type: Bool;
    sec_strict,
    \* @type: Str;
    sec_phase,
    \* @type: Set(Str);
    sec_applied,
    \* @type: Set(Str);
    sec_degraded,
    \* @type: Bool;
    res_required,
    \* @type: Str;
    res_phase,
    \* @type: Bool;
    res_held,
    \* @type: Bool;
    res_limited,
    \* @type: { m: Str, name: Str, arg: Str };
    event

LC == INSTANCE Lifecycle
ISO == INSTANCE Isolation
FS == INSTANCE Filesystem
SEC == INSTANCE Security
RES == INSTANCE Resources

lc_vars == <<lc_status, lc_security, lc_cleaned, lc_removed>>
iso_vars == <<iso_rootless, iso_phase, iso_done>>
fs_vars == <<fs_phase, fs_mounted, fs_total, fs_allowChroot, fs_chrooted, fs_audit, fs_audited>>
sec_vars == <<sec_allowDegraded, sec_strict, sec_phase, sec_applied, sec_degraded>>
res_vars == <<res_required, res_phase, res_held, res_limited>>
vars == <<lc_vars, iso_vars, fs_vars, sec_vars, res_vars, event>>

Ev(m, name, arg) == event' = [m |-> m, name |-> name, arg |-> arg]

AnyFailed == "failed" \in {iso_phase, fs_phase, sec_phase, res_phase}
\* The container's processes may run: in their cgroup, or knowingly without one.
Contained == res_phase \in {"ready", "degraded"}
\* The step isolation waits for at its gate.
IsoNext == IF iso_done < Len(ISO!Plan) THEN ISO!Plan[iso_done + 1] ELSE "none"

Init ==
    /\ LC!LcInit /\ ISO!IsoInit /\ FS!FsInit /\ SEC!SecInit /\ RES!ResInit
    /\ event = [m |-> "", name |-> "", arg |-> ""]

(* Lifecycle steps, with the composition's guards. *)
LcStep ==
    /\ UNCHANGED <<iso_vars, fs_vars, sec_vars, res_vars>>
    /\ \/ LC!Create /\ Ev("lc", "Create", "")
       \/ /\ sec_phase = "locked" /\ Contained
          /\ LC!Prepared(SEC!Level) /\ Ev("lc", "Prepared", SEC!Level)
       \/ AnyFailed /\ LC!SetupFailed /\ Ev("lc", "SetupFailed", "")
       \/ LC!Start /\ Ev("lc", "Start", "")
       \/ LC!Abort /\ Ev("lc", "Abort", "")
       \/ LC!Exit /\ Ev("lc", "Exit", "")
       \/ \E sig \in LC!ModelSignals : LC!Kill(sig) /\ Ev("lc", "Kill", sig)
       \/ LC!Attach /\ Ev("lc", "Attach", "")
       \* Cleanup is done once the cgroup (and with it every process) is gone.
       \/ res_phase = "released" /\ LC!CleanupDone /\ Ev("lc", "CleanupDone", "")
       \/ LC!Remove /\ Ev("lc", "Remove", "")

\* The supervisor is gone: the lifecycle's Lost and, when it was carrying out a cgroup step,
\* the cgroup's Abandon in the same step (the step will never report).
LostStep ==
    /\ UNCHANGED <<iso_vars, fs_vars, sec_vars>>
    /\ LC!Lost /\ Ev("lc", "Lost", "")
    /\ IF RES!UnderWay # "none" THEN RES!Abandon ELSE UNCHANGED res_vars

IsoStep ==
    /\ UNCHANGED <<lc_vars, fs_vars, sec_vars, res_vars>>
    /\ \/ /\ lc_status = "creating" /\ res_phase \in {"waiting", "degraded"}
          /\ ISO!Begin /\ Ev("iso", "Begin", "")
       \/ \E s \in ISO!StepNames : ISO!Done(s) /\ Ev("iso", "Done", s)
       \/ \E s \in ISO!StepNames : ISO!Fail(s) /\ Ev("iso", "Fail", s)
       \/ /\ IF IsoNext = "unshare" THEN Contained ELSE fs_phase = "sealed"
          /\ ISO!Resume /\ Ev("iso", "Resume", "")

FsStep ==
    /\ UNCHANGED <<lc_vars, iso_vars, sec_vars, res_vars>>
    /\ \/ ISO!HasDone("loopback") /\ FS!Begin /\ Ev("fs", "Begin", "")
       \/ \E s \in FS!StepNames : FS!Done(s) /\ Ev("fs", "Done", s)
       \/ \E s \in FS!StepNames : FS!Fail(s) /\ Ev("fs", "Fail", s)

SecStep ==
    /\ UNCHANGED <<lc_vars, iso_vars, fs_vars, res_vars>>
    /\ \/ iso_phase = "ready" /\ fs_phase = "sealed" /\ SEC!Begin /\ Ev("sec", "Begin", "")
       \/ \E c \in SEC!Controls : SEC!Done(c) /\ Ev("sec", "Done", c)
       \/ \E c \in SEC!Controls : SEC!Fail(c) /\ Ev("sec", "Fail", c)

ResStep ==
    /\ UNCHANGED <<lc_vars, iso_vars, fs_vars, sec_vars>>
    /\ \/ lc_status = "creating" /\ RES!Begin /\ Ev("res", "Begin", "")
       \/ ISO!HasDone("spawn") /\ RES!Attach /\ Ev("res", "Attach", "")
       \/ lc_status \in {"stopped", "failed"} /\ RES!Release /\ Ev("res", "Release", "")
       \/ \E s \in RES!StepNames : RES!Done(s) /\ Ev("res", "Done", s)
       \/ \E s \in RES!StepNames : RES!Fail(s) /\ Ev("res", "Fail", s)

Next == LcStep \/ LostStep \/ IsoStep \/ FsStep \/ SecStep \/ ResStep

Spec == Init /\ [][Next]_vars

(* The composition's invariants (each machine's own hold too: see Inv). *)
RunningRequiresIsolation ==
    lc_status \in {"created", "running"} => (iso_phase = "ready" /\ fs_phase = "sealed")
RunningRequiresSecurity == lc_status \in {"created", "running"} => sec_phase = "locked"
LevelMatchesControls == lc_status \in {"created", "running"} => lc_security = SEC!Level
UserNamespaceAfterSeal == (~iso_rootless /\ ISO!HasDone("enter_user")) => fs_phase = "sealed"
FailureNeverRuns == AnyFailed => lc_status \in {"creating", "failed", "removed"}
SecurityOnlyInside ==
    sec_phase # "idle" => (iso_phase \in {"ready", "failed"} /\ fs_phase = "sealed")
RunningRequiresContainment == lc_status \in {"created", "running"} => Contained
NamespacesInsideCgroup ==
    ISO!HasDone("unshare") => res_phase \notin {"idle", "creating", "limiting", "waiting", "attaching"}
CleanedMeansReleased ==
    (lc_status \in {"stopped", "failed", "removed"} /\ lc_cleaned) => res_phase = "released"

Inv ==
    /\ LC!Inv /\ ISO!Inv /\ FS!Inv /\ SEC!Inv /\ RES!Inv
    /\ RunningRequiresIsolation /\ RunningRequiresSecurity /\ LevelMatchesControls
    /\ UserNamespaceAfterSeal /\ FailureNeverRuns /\ SecurityOnlyInside
    /\ RunningRequiresContainment /\ NamespacesInsideCgroup /\ CleanedMeansReleased
=============================================================================
