------------------------------ MODULE Isolation ------------------------------
(***************************************************************************)
(* Namespace setup, mirrored by nucleus/machines/isolation.py.            *)
(* A plan of steps in order. Privileged order: every namespace but the    *)
(* user namespace is owned by the host's user namespace; the user         *)
(* namespace is entered last, after the filesystem is sealed (the machine *)
(* waits for Resume). Rootless order: the user namespace comes first.     *)
(* A namespace named by path (a pod's) is joined at the "unshare" step    *)
(* instead of made: the same step, another effect. Nothing here tears a   *)
(* namespace down, so one that was joined is left to its maker.           *)
(***************************************************************************)
EXTENDS Naturals, Sequences

VARIABLES
    \* @type: Bool;
    iso_rootless,
    \* @type: Str;
    iso_phase,
    \* @type: Int;
    iso_done,
    \* @type: { m: Str, name: Str, arg: Str };
    event

\* @type: Seq(Str);
PrivilegedPlan ==
    <<"spawn", "unshare", "fork_init", "hostname", "loopback", "enter_user", "map_ids", "become_root">>
\* @type: Seq(Str);
RootlessPlan ==
    <<"spawn", "unshare", "map_ids", "become_root", "fork_init", "hostname", "loopback">>
\* The longer plan's length: a constant bound for quantifiers over plan positions.
MaxSteps == 8
StepNames ==
    {"spawn", "unshare", "fork_init", "hostname", "loopback", "enter_user", "map_ids", "become_root"}
Phases == {"idle", "running", "waiting", "ready", "failed"}

\* @type: Seq(Str);
Plan == IF iso_rootless THEN RootlessPlan ELSE PrivilegedPlan

HasDone(s) == \E i \in 1..MaxSteps : i <= iso_done /\ Plan[i] = s

iso_vars == <<iso_rootless, iso_phase, iso_done>>
vars == <<iso_rootless, iso_phase, iso_done, event>>

IsoInit ==
    /\ iso_rootless \in BOOLEAN
    /\ iso_phase = "idle"
    /\ iso_done = 0

\* The phase after `d` steps are done: finished, paused before the user namespace, or running.
\* Gates: the steps that wait for Resume. "unshare" waits until the setup process is in the
\* container's cgroup (so the cgroup namespace is rooted there); in the privileged order
\* "enter_user" waits until the root filesystem is sealed.
IsGate(s) == s = "unshare" \/ (s = "enter_user" /\ ~iso_rootless)

PhaseAfter(d) ==
    IF d = Len(Plan) THEN "ready"
    ELSE IF IsGate(Plan[d + 1]) THEN "waiting"
    ELSE "running"

Begin ==
    /\ iso_phase = "idle"
    /\ iso_phase' = PhaseAfter(0)
    /\ UNCHANGED <<iso_rootless, iso_done>>

Done(s) ==
    /\ iso_phase = "running"
    /\ Plan[iso_done + 1] = s
    /\ iso_done' = iso_done + 1
    /\ iso_phase' = PhaseAfter(iso_done + 1)
    /\ UNCHANGED iso_rootless

Fail(s) ==
    /\ iso_phase = "running"
    /\ Plan[iso_done + 1] = s
    /\ iso_phase' = "failed"
    /\ UNCHANGED <<iso_rootless, iso_done>>

Resume ==
    /\ iso_phase = "waiting"
    /\ iso_phase' = "running"
    /\ UNCHANGED <<iso_rootless, iso_done>>

Ev(name, arg) == event' = [m |-> "iso", name |-> name, arg |-> arg]

Init == IsoInit /\ event = [m |-> "", name |-> "", arg |-> ""]

Next ==
    \/ Begin /\ Ev("Begin", "")
    \/ \E s \in StepNames : Done(s) /\ Ev("Done", s)
    \/ \E s \in StepNames : Fail(s) /\ Ev("Fail", s)
    \/ Resume /\ Ev("Resume", "")

Spec == Init /\ [][Next]_vars

(* Invariants: the same names as in the machine. *)
TypeOK ==
    /\ iso_rootless \in BOOLEAN
    /\ iso_phase \in Phases
    /\ iso_done \in 0..Len(Plan)

ReadyMeansComplete == iso_phase = "ready" => iso_done = Len(Plan)
MapsNeedUserNamespace ==
    HasDone("map_ids") => HasDone(IF iso_rootless THEN "unshare" ELSE "enter_user")
RootOnlyAfterMaps == HasDone("become_root") => HasDone("map_ids")
InitInNewPidNamespace == HasDone("fork_init") => HasDone("unshare")
WaitOnlyAtGates ==
    iso_phase = "waiting" => (iso_done < Len(Plan) /\ IsGate(Plan[iso_done + 1]))

Inv ==
    /\ TypeOK /\ ReadyMeansComplete /\ MapsNeedUserNamespace /\ RootOnlyAfterMaps
    /\ InitInNewPidNamespace /\ WaitOnlyAtGates

(* Temporal: steps are never undone. *)
Monotone == [][iso_done' >= iso_done]_vars
=============================================================================
