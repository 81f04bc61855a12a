------------------------------ MODULE Lifecycle ------------------------------
(***************************************************************************)
(* The container lifecycle, mirrored by nucleus/machines/lifecycle.py.     *)
(* none -> creating -> created -> running -> stopped -> removed; failed is *)
(* reachable from creating and created, and (Lost) from any active       *)
(* status. Host resources are held from Create until CleanupDone, and     *)
(* Remove requires them released. A supervisor lost before it cleaned up  *)
(* (seen by `rm --force`) leads to the same cleanup.                      *)
(***************************************************************************)
EXTENDS Naturals

VARIABLES
    \* @type: Str;
    lc_status,
    \* @type: Str;
    lc_security,
    \* @type: Bool;
    lc_cleaned,
    \* @type: Bool;
    lc_removed,
    \* @type: { m: Str, name: Str, arg: Str };
    event

Statuses == {"none", "creating", "created", "running", "stopped", "failed", "removed"}
Levels == {"none", "enforced", "degraded", "traced"}
\* The levels a prepared container runs at (Security's Level).
PreparedLevels == {"enforced", "degraded", "traced"}
\* The signals `nucleus kill` sends (nucleus/config/signals.py, SENDABLE).
Signals == {"TERM", "INT", "HUP", "QUIT", "USR1", "USR2", "WINCH", "KILL"}

lc_vars == <<lc_status, lc_security, lc_cleaned, lc_removed>>
vars == <<lc_status, lc_security, lc_cleaned, lc_removed, event>>

LcInit ==
    /\ lc_status = "none"
    /\ lc_security = "none"
    /\ lc_cleaned = TRUE
    /\ lc_removed = FALSE

Create ==
    /\ lc_status = "none"
    /\ lc_status' = "creating"
    /\ lc_cleaned' = FALSE
    /\ UNCHANGED <<lc_security, lc_removed>>

Prepared(level) ==
    /\ lc_status = "creating"
    /\ level \in PreparedLevels
    /\ lc_status' = "created"
    /\ lc_security' = level
    /\ UNCHANGED <<lc_cleaned, lc_removed>>

SetupFailed ==
    /\ lc_status = "creating"
    /\ lc_status' = "failed"
    /\ UNCHANGED <<lc_security, lc_cleaned, lc_removed>>

Start ==
    /\ lc_status = "created"
    /\ lc_status' = "running"
    /\ UNCHANGED <<lc_security, lc_cleaned, lc_removed>>

Abort ==
    /\ lc_status = "created"
    /\ lc_status' = "failed"
    /\ UNCHANGED <<lc_security, lc_cleaned, lc_removed>>

Exit ==
    /\ lc_status = "running"
    /\ lc_status' = "stopped"
    /\ UNCHANGED <<lc_security, lc_cleaned, lc_removed>>

\* Kill forwards a signal; the status changes only when the workload exits (Exit).
Kill(sig) ==
    /\ lc_status = "running"
    /\ sig \in Signals
    /\ UNCHANGED lc_vars

\* The supervisor is gone (killed) before its container was cleaned up: what is left is
\* reclaimed by a later `rm --force`. An active container fails; a stopped or failed one whose
\* cleanup was under way stays as it is (the cleanup starts again).
Lost ==
    \/ /\ lc_status \in {"creating", "created", "running"}
       /\ lc_status' = "failed"
       /\ UNCHANGED <<lc_security, lc_cleaned, lc_removed>>
    \/ /\ lc_status \in {"stopped", "failed"}
       /\ ~lc_cleaned
       /\ UNCHANGED lc_vars

\* Joining a running container changes nothing in its lifecycle; it is refused otherwise.
Attach ==
    /\ lc_status = "running"
    /\ UNCHANGED lc_vars

CleanupDone ==
    /\ lc_status \in {"stopped", "failed"}
    /\ ~lc_cleaned
    /\ lc_cleaned' = TRUE
    /\ UNCHANGED <<lc_status, lc_security, lc_removed>>

Remove ==
    /\ lc_status \in {"stopped", "failed"}
    /\ lc_cleaned
    /\ lc_status' = "removed"
    /\ lc_removed' = TRUE
    /\ UNCHANGED <<lc_security, lc_cleaned>>

Ev(name, arg) == event' = [m |-> "lc", name |-> name, arg |-> arg]

Init == LcInit /\ event = [m |-> "", name |-> "", arg |-> ""]

Next ==
    \/ Create /\ Ev("Create", "")
    \/ \E level \in PreparedLevels : Prepared(level) /\ Ev("Prepared", level)
    \/ SetupFailed /\ Ev("SetupFailed", "")
    \/ Start /\ Ev("Start", "")
    \/ Abort /\ Ev("Abort", "")
    \/ Exit /\ Ev("Exit", "")
    \/ \E sig \in Signals : Kill(sig) /\ Ev("Kill", sig)
    \/ Lost /\ Ev("Lost", "")
    \/ Attach /\ Ev("Attach", "")
    \/ CleanupDone /\ Ev("CleanupDone", "")
    \/ Remove /\ Ev("Remove", "")

Spec == Init /\ [][Next]_vars /\ WF_vars(CleanupDone /\ Ev("CleanupDone", ""))

(* Invariants: the same names as in the machine. *)
TypeOK ==
    /\ lc_status \in Statuses
    /\ lc_security \in Levels
    /\ lc_cleaned \in BOOLEAN
    /\ lc_removed \in BOOLEAN

SecuredBeforeRun == lc_status \in {"created", "running"} => lc_security # "none"
RemovedIsFinal == lc_removed => lc_status = "removed"
RemovedRequiresCleanup == lc_status = "removed" => lc_cleaned
NothingHeldWhenAbsent == lc_status \in {"none", "removed"} => lc_cleaned

Inv == TypeOK /\ SecuredBeforeRun /\ RemovedIsFinal /\ RemovedRequiresCleanup /\ NothingHeldWhenAbsent

(* Temporal: a removed container stays removed; every failure or exit gets cleaned up. *)
NeverBackFromRemoved == [][lc_removed => lc_removed']_vars
CleanupEventually == (lc_status \in {"stopped", "failed"}) ~> lc_cleaned
=============================================================================
