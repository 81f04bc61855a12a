------------------------------ MODULE Resources ------------------------------
(***************************************************************************)
(* The container's cgroup, mirrored by nucleus/machines/resources.py.     *)
(* create -> limits -> (wait for the setup process) -> attach -> ready;   *)
(* released at cleanup. A failure is fatal when cgroups are required      *)
(* (strict-agent, production) and otherwise degrades to running without   *)
(* limits. One limit the kernel refuses is a Fail(limits) when required;  *)
(* otherwise it is skipped with a warning and the step is Done(limits):   *)
(* res_limited means the limits the host took are written. What           *)
(* may have been created is removed at cleanup on every path: a failed or *)
(* abandoned creation may have left directories behind, so it counts as   *)
(* held. A failed removal leaves the cgroup "leaked"; cleanup tries the   *)
(* removal again (with a growing pause), at most MaxReleaseTries times in  *)
(* all, and then gives up: the cgroup stays leaked (GaveUp) until another  *)
(* process takes the cleanup over (in System: `rm --force`, after Lost).   *)
(***************************************************************************)
EXTENDS Naturals

VARIABLES
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
    \* @type: { m: Str, name: Str, arg: Str };
    event

Phases == {"idle", "creating", "limiting", "waiting", "attaching", "ready", "degraded", "failed",
           "releasing", "released", "leaked"}
StepNames == {"create", "limits", "attach", "release"}
Settled == {"idle", "degraded", "failed", "waiting", "ready", "leaked"}
\* The removals tried (the first and the retries) before the cleanup gives up on the cgroup.
MaxReleaseTries == 3

UnderWay ==
    CASE res_phase = "creating" -> "create"
      [] res_phase = "limiting" -> "limits"
      [] res_phase = "attaching" -> "attach"
      [] res_phase = "releasing" -> "release"
      [] OTHER -> "none"

res_vars == <<res_required, res_phase, res_held, res_limited, res_tries>>
vars == <<res_required, res_phase, res_held, res_limited, res_tries, event>>

ResInit ==
    /\ res_required \in BOOLEAN
    /\ res_phase = "idle"
    /\ res_held = FALSE
    /\ res_limited = FALSE
    /\ res_tries = 0

Begin ==
    /\ res_phase = "idle"
    /\ res_phase' = "creating"
    /\ UNCHANGED <<res_required, res_held, res_limited, res_tries>>

Attach ==
    /\ res_phase = "waiting"
    /\ res_phase' = "attaching"
    /\ UNCHANGED <<res_required, res_held, res_limited, res_tries>>

\* The cleanup has given up on the cgroup: every removal it may try has failed.
GaveUp == res_phase = "leaked" /\ res_tries = MaxReleaseTries

\* A leaked cgroup's removal is tried again while tries are left.
Release ==
    /\ res_phase \in Settled
    /\ ~GaveUp
    /\ res_phase' = IF res_held THEN "releasing" ELSE "released"
    /\ UNCHANGED <<res_required, res_held, res_limited, res_tries>>

Done(s) ==
    /\ UnderWay = s
    /\ \/ s = "create" /\ res_phase' = "limiting" /\ res_held' = TRUE /\ UNCHANGED res_limited
       \/ s = "limits" /\ res_phase' = "waiting" /\ res_limited' = TRUE /\ UNCHANGED res_held
       \/ s = "attach" /\ res_phase' = "ready" /\ UNCHANGED <<res_held, res_limited>>
       \/ s = "release" /\ res_phase' = "released" /\ res_held' = FALSE /\ res_limited' = FALSE
    /\ UNCHANGED <<res_required, res_tries>>

\* Step s did not complete (it failed, or the process carrying it out is gone). An unfinished
\* removal leaves the cgroup leaked, one try spent; an unfinished create, limits or attach is fatal when the
\* cgroup is required, else it degrades, and either way whatever it may have left counts as held.
Unfinished(s) ==
    IF s = "release"
    THEN res_phase' = "leaked" /\ res_tries' = res_tries + 1 /\ UNCHANGED res_held
    ELSE /\ res_phase' = IF res_required THEN "failed" ELSE "degraded"
         /\ res_held' = TRUE
         /\ UNCHANGED res_tries

Fail(s) ==
    /\ UnderWay = s
    /\ Unfinished(s)
    /\ UNCHANGED <<res_required, res_limited>>

\* The step under way will never report (in System: the supervisor carrying it out is Lost).
Abandon ==
    /\ UnderWay # "none"
    /\ Unfinished(UnderWay)
    /\ UNCHANGED <<res_required, res_limited>>

\* Another process takes over a cleanup that gave up (in System, inside Lost): its tries start
\* afresh.
Reclaim ==
    /\ GaveUp
    /\ res_tries' = 0
    /\ UNCHANGED <<res_required, res_phase, res_held, res_limited>>

Ev(name, arg) == event' = [m |-> "res", name |-> name, arg |-> arg]

Init == ResInit /\ event = [m |-> "", name |-> "", arg |-> ""]

Next ==
    \/ Begin /\ Ev("Begin", "")
    \/ Attach /\ Ev("Attach", "")
    \/ Release /\ Ev("Release", "")
    \/ \E s \in StepNames : Done(s) /\ Ev("Done", s)
    \/ \E s \in StepNames : Fail(s) /\ Ev("Fail", s)
    \/ Abandon /\ Ev("Abandon", "")

\* Cleanup proceeds on its own: a removal enabled is tried, and one under way ends (Done or
\* Fail: the effect reports).
Fairness ==
    /\ WF_vars(Release /\ Ev("Release", ""))
    /\ WF_vars(\/ Done("release") /\ Ev("Done", "release")
               \/ Fail("release") /\ Ev("Fail", "release"))

Spec == Init /\ [][Next]_vars /\ Fairness

(* Invariants: the same names as in the machine. *)
TypeOK ==
    /\ res_required \in BOOLEAN
    /\ res_phase \in Phases
    /\ res_held \in BOOLEAN
    /\ res_limited \in BOOLEAN
    /\ res_tries \in 0..MaxReleaseTries

ReleasedHoldsNothing == res_phase = "released" => ~res_held
DegradedOnlyIfOptional == res_phase = "degraded" => ~res_required
FailedOnlyIfRequired == res_phase = "failed" => res_required
AttachOnlyWhenLimited == res_phase \in {"attaching", "ready"} => (res_held /\ res_limited)
LimitedMeansHeld == res_limited => res_held
\* Once creation has been tried, the cgroup counts as held until a release completes.
NothingCreatedIsForgotten == res_phase \notin {"idle", "creating", "released"} => res_held

Inv ==
    /\ TypeOK /\ ReleasedHoldsNothing /\ DegradedOnlyIfOptional /\ FailedOnlyIfRequired
    /\ AttachOnlyWhenLimited /\ LimitedMeansHeld /\ NothingCreatedIsForgotten

(* Temporal: once released, nothing is held again; under Spec's fairness a removal begun ends *)
(* with the cgroup released or given up on (never retried forever).                      *)
ReleasedStays == [][res_phase = "released" => res_phase' = "released"]_vars
ReleaseEnds == res_phase = "releasing" ~> (res_phase = "released" \/ GaveUp)
=============================================================================
