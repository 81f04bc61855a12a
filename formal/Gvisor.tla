------------------------------- MODULE Gvisor -------------------------------
(***************************************************************************)
(* A container run by gVisor's runsc (`nucleus run --runtime gvisor`),    *)
(* mirrored by nucleus/machines/gvisor.py. The supervisor writes an OCI   *)
(* bundle (gv_bundle), then `runsc run` makes the sandbox (gv_sandbox:    *)
(* runsc's state under nucleus's own --root, its cgroups, its processes)  *)
(* and runs the workload. When the workload ends, when a step fails, or   *)
(* when the supervisor is lost, the sandbox is deleted (runsc delete      *)
(* --force) before the bundle is removed; the container is removed only   *)
(* once neither is left. A cleanup step that fails leaves its part in     *)
(* place: Sweep (nucleus rm --force) starts the cleanup again.            *)
(***************************************************************************)

VARIABLES
    \* @type: Str;
    gv_status,
    \* @type: Bool;
    gv_bundle,
    \* @type: Bool;
    gv_sandbox,
    \* @type: { m: Str, name: Str, arg: Str };
    event

Statuses == {"none", "creating", "running", "stopped", "failed", "removed"}
\* The steps of the setup that can fail: writing the bundle, runsc run.
Steps == {"bundle", "run"}
\* The signals a supervisor forwards to the workload (and stop and kill send).
Signals == {"TERM", "KILL", "INT", "HUP", "QUIT", "USR1", "USR2"}
Ended == {"stopped", "failed"}

vars == <<gv_status, gv_bundle, gv_sandbox, event>>

GvisorInit ==
    /\ gv_status = "none"
    /\ gv_bundle = FALSE
    /\ gv_sandbox = FALSE

Create ==
    /\ gv_status = "none"
    /\ gv_status' = "creating"
    /\ UNCHANGED <<gv_bundle, gv_sandbox>>

\* The bundle (config.json and the root it names) is on disk.
Written ==
    /\ gv_status = "creating"
    /\ ~gv_bundle
    /\ gv_bundle' = TRUE
    /\ UNCHANGED <<gv_status, gv_sandbox>>

\* runsc run has made the sandbox and started the workload.
Started ==
    /\ gv_status = "creating"
    /\ gv_bundle /\ ~gv_sandbox
    /\ gv_status' = "running"
    /\ gv_sandbox' = TRUE
    /\ UNCHANGED gv_bundle

\* A setup step failed. A failed runsc run may have left its state behind: the
\* cleanup deletes it all the same.
Fail(s) ==
    /\ gv_status = "creating"
    /\ IF s = "bundle" THEN ~gv_bundle ELSE gv_bundle /\ ~gv_sandbox
    /\ gv_status' = "failed"
    /\ gv_sandbox' = (s = "run")
    /\ UNCHANGED gv_bundle

Exit ==
    /\ gv_status = "running"
    /\ gv_status' = "stopped"
    /\ UNCHANGED <<gv_bundle, gv_sandbox>>

\* A signal for the workload (runsc kill): nothing of the machine changes.
Kill(sig) ==
    /\ gv_status = "running"
    /\ UNCHANGED <<gv_status, gv_bundle, gv_sandbox>>

\* A command run in the sandbox (runsc exec, for nucleus exec): nothing of the machine changes.
Exec ==
    /\ gv_status = "running"
    /\ UNCHANGED <<gv_status, gv_bundle, gv_sandbox>>

\* The supervisor is gone while the container was active: once the bundle was
\* written, runsc run may have made a sandbox.
Lost ==
    /\ gv_status \in {"creating", "running"}
    /\ gv_status' = "failed"
    /\ gv_sandbox' = gv_bundle
    /\ UNCHANGED gv_bundle

\* runsc delete --force: the sandbox, its state and its cgroups are gone.
Deleted ==
    /\ gv_status \in Ended
    /\ gv_sandbox
    /\ gv_sandbox' = FALSE
    /\ UNCHANGED <<gv_status, gv_bundle>>

\* The bundle is removed, after the sandbox that used it.
Unbundled ==
    /\ gv_status \in Ended
    /\ gv_bundle /\ ~gv_sandbox
    /\ gv_bundle' = FALSE
    /\ UNCHANGED <<gv_status, gv_sandbox>>

\* A cleanup left something: it is started again. ("Something left" is written as a
\* negation: TLC counts the equal successors of both disjuncts of a disjunction separately.)
Sweep ==
    /\ gv_status \in Ended
    /\ ~(~gv_bundle /\ ~gv_sandbox)
    /\ UNCHANGED <<gv_status, gv_bundle, gv_sandbox>>

Remove ==
    /\ gv_status \in Ended
    /\ ~gv_bundle /\ ~gv_sandbox
    /\ gv_status' = "removed"
    /\ UNCHANGED <<gv_bundle, gv_sandbox>>

Ev(name, arg) == event' = [m |-> "gv", name |-> name, arg |-> arg]

Init == GvisorInit /\ event = [m |-> "", name |-> "", arg |-> ""]

Next ==
    \/ Create /\ Ev("Create", "")
    \/ Written /\ Ev("Written", "")
    \/ Started /\ Ev("Started", "")
    \/ \E s \in Steps : Fail(s) /\ Ev("Fail", s)
    \/ Exit /\ Ev("Exit", "")
    \/ \E sig \in Signals : Kill(sig) /\ Ev("Kill", sig)
    \/ Exec /\ Ev("Exec", "")
    \/ Lost /\ Ev("Lost", "")
    \/ Deleted /\ Ev("Deleted", "")
    \/ Unbundled /\ Ev("Unbundled", "")
    \/ Sweep /\ Ev("Sweep", "")
    \/ Remove /\ Ev("Remove", "")

Spec == Init /\ [][Next]_vars

(* Invariants: the same names as in the machine. *)
TypeOK ==
    /\ gv_status \in Statuses
    /\ gv_bundle \in BOOLEAN
    /\ gv_sandbox \in BOOLEAN

\* The workload runs only in a sandbox made from a bundle on disk.
RunningHasSandbox == gv_status = "running" => gv_sandbox /\ gv_bundle
\* The bundle is removed only after the sandbox made from it.
SandboxNeedsBundle == gv_sandbox => gv_bundle
\* Nothing is left of a container never created, or removed.
RemovedLeavesNothing == gv_status \in {"none", "removed"} => ~gv_bundle /\ ~gv_sandbox

Inv == TypeOK /\ RunningHasSandbox /\ SandboxNeedsBundle /\ RemovedLeavesNothing

(* Temporal: a removed container stays removed; an ended one never runs again. *)
NeverBackFromRemoved == [][gv_status = "removed" => gv_status' = "removed"]_vars
NeverRunsAgain == [][(gv_status \in Ended) => gv_status' \in Ended \union {"removed"}]_vars
=============================================================================
