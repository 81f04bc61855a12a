------------------------------- MODULE System -------------------------------
(***************************************************************************)
(* One container: the lifecycle, isolation, filesystem, security,        *)
(* resources and network machines composed, mirrored by                  *)
(* nucleus/machines/system.py. Each step is one machine's step; the       *)
(* coupling lives in the guards below. One step touches more machines:    *)
(* the supervisor Lost while a cgroup or network step was under way       *)
(* abandons that step (it will never report).                             *)
(* The service mode (sys_mode) fixes the machines' parameters: see        *)
(* ModeParameters, which nucleus/plan/parameters.py implements.           *)
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
    \* @type: Bool;
    sec_trace,
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
    \* @type: Int;
    res_tries,
    \* @type: Bool;
    net_bridged,
    \* @type: Bool;
    net_user,
    \* @type: Bool;
    net_egress,
    \* @type: Str;
    net_phase,
    \* @type: Int;
    net_done,
    \* @type: Set(Str);
    net_held,
    \* @type: Str;
    sys_mode,
    \* @type: { m: Str, name: Str, arg: Str };
    event

LC == INSTANCE Lifecycle
ISO == INSTANCE Isolation
FS == INSTANCE Filesystem
SEC == INSTANCE Security
RES == INSTANCE Resources
\* The container's more network attachments (Network's net_extra): none when model-checked (more
\* change only the network's own plan, which Network.tla checks with them); `nucleus trace check`
\* instantiates a run's trace at its own number, which the trace's net_extra records.
NetExtra == 0
NET == INSTANCE Network WITH net_extra <- NetExtra

lc_vars == <<lc_status, lc_security, lc_cleaned, lc_removed>>
iso_vars == <<iso_rootless, iso_phase, iso_done>>
fs_vars == <<fs_phase, fs_mounted, fs_total, fs_allowChroot, fs_chrooted, fs_audit, fs_audited>>
sec_vars == <<sec_allowDegraded, sec_strict, sec_trace, sec_phase, sec_applied, sec_degraded>>
res_vars == <<res_required, res_phase, res_held, res_limited, res_tries>>
net_vars == <<net_bridged, net_user, net_egress, net_phase, net_done, net_held>>
vars == <<lc_vars, iso_vars, fs_vars, sec_vars, res_vars, net_vars, sys_mode, event>>

Ev(m, name, arg) == event' = [m |-> m, name |-> name, arg |-> arg]

AnyFailed == "failed" \in {iso_phase, fs_phase, sec_phase, res_phase, net_phase}
\* The container's processes may run: in their cgroup, or knowingly without one.
Contained == res_phase \in {"ready", "degraded"}
\* The step isolation waits for at its gate.
IsoNext == IF iso_done < Len(ISO!Plan) THEN ISO!Plan[iso_done + 1] ELSE "none"

\* The service modes (--service-mode) and what each asks of the machines. The strict modes
\* never degrade a control, never trace seccomp, never fall back to a chroot and require their
\* cgroup; production also audits its mounts, and a network of its own denies egress by default
\* (a bridge or a user-mode network always has an egress policy). An untrusted workload
\* (--trust-level untrusted) is refused every weakening: in agent mode it runs with the strict
\* modes' security parameters (sec_allowDegraded, sec_trace and fs_allowChroot FALSE), which
\* agent mode's range includes.
Modes == {"agent", "strict-agent", "production"}
ModeParameters(m) ==
    /\ sec_strict = (m # "agent")
    /\ res_required = (m # "agent")
    /\ fs_audit = (m = "production")
    /\ m # "agent" => (~sec_allowDegraded /\ ~sec_trace /\ ~fs_allowChroot)
    /\ m = "production" => ((net_bridged \/ net_user) => net_egress)

Init ==
    /\ LC!LcInit /\ ISO!IsoInit /\ FS!FsInit /\ SEC!SecInit /\ RES!ResInit /\ NET!NetInit
    /\ sys_mode \in Modes /\ ModeParameters(sys_mode)
    /\ event = [m |-> "", name |-> "", arg |-> ""]

(* Lifecycle steps, with the composition's guards. *)
LcStep ==
    /\ UNCHANGED <<iso_vars, fs_vars, sec_vars, res_vars, net_vars>>
    /\ \/ LC!Create /\ Ev("lc", "Create", "")
       \/ /\ sec_phase = "locked" /\ Contained
          /\ LC!Prepared(SEC!Level) /\ Ev("lc", "Prepared", SEC!Level)
       \/ AnyFailed /\ LC!SetupFailed /\ Ev("lc", "SetupFailed", "")
       \/ LC!Start /\ Ev("lc", "Start", "")
       \/ LC!Abort /\ Ev("lc", "Abort", "")
       \/ LC!Exit /\ Ev("lc", "Exit", "")
       \/ \E sig \in LC!Signals : LC!Kill(sig) /\ Ev("lc", "Kill", sig)
       \/ LC!Attach /\ Ev("lc", "Attach", "")
       \* Cleanup is done once the cgroup (and with it every process) and the network are gone.
       \/ res_phase = "released" /\ net_phase = "released" /\ LC!CleanupDone /\ Ev("lc", "CleanupDone", "")
       \/ LC!Remove /\ Ev("lc", "Remove", "")

\* The supervisor is gone: the lifecycle's Lost and, when it was carrying out a cgroup or a
\* network step, that machine's Abandon in the same step (the step will never report). The
\* process that takes the cleanup over (`rm --force`) tries again a cgroup given up on.
LostStep ==
    /\ UNCHANGED <<iso_vars, fs_vars, sec_vars>>
    /\ LC!Lost /\ Ev("lc", "Lost", "")
    /\ IF RES!UnderWay # "none" THEN RES!Abandon
       ELSE IF RES!GaveUp THEN RES!Reclaim ELSE UNCHANGED res_vars
    /\ IF NET!UnderWay # "none" THEN NET!Abandon ELSE UNCHANGED net_vars

IsoStep ==
    /\ UNCHANGED <<lc_vars, fs_vars, sec_vars, res_vars, net_vars>>
    /\ \/ /\ lc_status = "creating" /\ res_phase \in {"waiting", "degraded"}
          /\ ISO!Begin /\ Ev("iso", "Begin", "")
       \/ \E s \in ISO!StepNames : ISO!Done(s) /\ Ev("iso", "Done", s)
       \/ \E s \in ISO!StepNames : ISO!Fail(s) /\ Ev("iso", "Fail", s)
       \/ /\ IF IsoNext = "unshare" THEN Contained ELSE fs_phase = "sealed"
          /\ ISO!Resume /\ Ev("iso", "Resume", "")

\* The root is built once the network is in place: the container side of a bridge is set up
\* by the setup process while it still holds the capabilities the host granted it.
FsStep ==
    /\ UNCHANGED <<lc_vars, iso_vars, sec_vars, res_vars, net_vars>>
    /\ \/ ISO!HasDone("loopback") /\ net_phase = "ready" /\ FS!Begin /\ Ev("fs", "Begin", "")
       \/ \E s \in FS!StepNames : FS!Done(s) /\ Ev("fs", "Done", s)
       \/ \E s \in FS!StepNames : FS!Fail(s) /\ Ev("fs", "Fail", s)

SecStep ==
    /\ UNCHANGED <<lc_vars, iso_vars, fs_vars, res_vars, net_vars>>
    /\ \/ iso_phase = "ready" /\ fs_phase = "sealed" /\ SEC!Begin /\ Ev("sec", "Begin", "")
       \/ \E c \in SEC!Controls : SEC!Done(c) /\ Ev("sec", "Done", c)
       \/ \E c \in SEC!Controls : SEC!Fail(c) /\ Ev("sec", "Fail", c)

ResStep ==
    /\ UNCHANGED <<lc_vars, iso_vars, fs_vars, sec_vars, net_vars>>
    /\ \/ lc_status = "creating" /\ RES!Begin /\ Ev("res", "Begin", "")
       \/ ISO!HasDone("spawn") /\ RES!Attach /\ Ev("res", "Attach", "")
       \/ lc_status \in {"stopped", "failed"} /\ RES!Release /\ Ev("res", "Release", "")
       \/ \E s \in RES!StepNames : RES!Done(s) /\ Ev("res", "Done", s)
       \/ \E s \in RES!StepNames : RES!Fail(s) /\ Ev("res", "Fail", s)

\* The network is set up inside the new namespaces (after loopback is up), and torn down once
\* the container's cgroup, and with it every process of the container, is gone.
NetStep ==
    /\ UNCHANGED <<lc_vars, iso_vars, fs_vars, sec_vars, res_vars>>
    /\ \/ lc_status = "creating" /\ ISO!HasDone("loopback") /\ NET!Begin /\ Ev("net", "Begin", "")
       \/ \E s \in NET!StepNames : NET!Done(s) /\ Ev("net", "Done", s)
       \/ \E s \in NET!StepNames : NET!Fail(s) /\ Ev("net", "Fail", s)
       \/ lc_status \in {"stopped", "failed"} /\ res_phase = "released" /\ NET!Release /\ Ev("net", "Release", "")

Next == (LcStep \/ LostStep \/ IsoStep \/ FsStep \/ SecStep \/ ResStep \/ NetStep) /\ UNCHANGED sys_mode

\* Setup and cleanup proceed on their own (the driver takes the steps its machines enable, and
\* every step under way reports): weak fairness on each machine's steps, but for the teardown of
\* a leaked network, which only `rm --force` tries again. Lost is the user's, and not fair.
Fairness ==
    /\ WF_vars(LcStep /\ UNCHANGED sys_mode) /\ WF_vars(IsoStep /\ UNCHANGED sys_mode)
    /\ WF_vars(FsStep /\ UNCHANGED sys_mode) /\ WF_vars(SecStep /\ UNCHANGED sys_mode)
    /\ WF_vars(ResStep /\ UNCHANGED sys_mode)
    /\ WF_vars(NetStep /\ net_phase # "leaked" /\ UNCHANGED sys_mode)

Spec == Init /\ [][Next]_vars /\ Fairness

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
    (lc_status \in {"stopped", "failed", "removed"} /\ lc_cleaned) =>
        (res_phase = "released" /\ net_phase = "released")
RunningRequiresNetwork == lc_status \in {"created", "running"} => net_phase = "ready"
\* A veth or a user-mode stack reaches only a namespace the container made, and the network is
\* torn down only once no process of the container is left.
NetworkInsideNamespaces == (NET!HasDone("veth") \/ NET!HasDone("usernet")) => ISO!HasDone("unshare")
NetworkOutlivesProcesses == net_phase \in {"releasing", "released"} => res_phase = "released"
\* What production promises while its workload may run (README's mode table): every control
\* enforced, none degraded or traced; the cgroup with its limits (the memory limit among them)
\* written; the mounts audited in a root that was pivoted into, not chrooted; and on a network
\* of its own, the egress policy in force.
Serving == lc_status \in {"created", "running"}
ProductionEnforced == (sys_mode = "production" /\ Serving) => lc_security = "enforced"
ProductionLimited == (sys_mode = "production" /\ Serving) => (res_phase = "ready" /\ res_limited)
ProductionAudited == (sys_mode = "production" /\ Serving) => (fs_audited /\ ~fs_chrooted)
ProductionEgressDenied ==
    (sys_mode = "production" /\ Serving /\ (net_bridged \/ net_user)) =>
        (net_egress /\ \A s \in NET!PolicySteps : NET!InPlan(s) => NET!HasDone(s))

Inv ==
    /\ LC!Inv /\ ISO!Inv /\ FS!Inv /\ SEC!Inv /\ RES!Inv /\ NET!Inv
    /\ RunningRequiresIsolation /\ RunningRequiresSecurity /\ LevelMatchesControls
    /\ UserNamespaceAfterSeal /\ FailureNeverRuns /\ SecurityOnlyInside
    /\ RunningRequiresContainment /\ NamespacesInsideCgroup /\ CleanedMeansReleased
    /\ RunningRequiresNetwork /\ NetworkInsideNamespaces /\ NetworkOutlivesProcesses
    /\ ProductionEnforced /\ ProductionLimited /\ ProductionAudited /\ ProductionEgressDenied

(* Liveness, under Spec's fairness: a stopped or failed container is cleaned up, unless its    *)
(* cleanup gave up on the cgroup (MaxReleaseTries removals failed: `rm --force` tries again)   *)
(* or the network's teardown failed (`rm --force` tries it again).                            *)
CleanupEventually ==
    (lc_status \in {"stopped", "failed"}) ~> (lc_cleaned \/ RES!GaveUp \/ net_phase = "leaked")
=============================================================================
