------------------------------- MODULE Gvisor -------------------------------
(***************************************************************************)
(* A container run by gVisor's runsc (`nucleus run --runtime gvisor`),    *)
(* mirrored by nucleus/machines/gvisor.py. The supervisor writes an OCI   *)
(* bundle (gv_bundle), then `runsc run` makes the sandbox (gv_sandbox:    *)
(* runsc's state under nucleus's own --root, its cgroups, its processes)  *)
(* and runs the workload. With a bridge (net_bridged) the container's     *)
(* network namespace comes first (gv_netns: held by a process of the      *)
(* supervisor's, named in the bundle), and the Network machine (NET)      *)
(* makes its host side and its link, addresses and routes inside before   *)
(* runsc run, whose netstack takes the link over. When the workload ends, *)
(* when a step fails, or when the supervisor is lost, the sandbox is      *)
(* deleted (runsc delete --force), then the network is released, then the *)
(* namespace's process ended, then the bundle removed; the container is   *)
(* removed only once nothing is left. A cleanup step that fails leaves    *)
(* its part in place: Sweep (nucleus rm --force) starts the cleanup again. *)
(***************************************************************************)

VARIABLES
    \* @type: Str;
    gv_status,
    \* @type: Bool;
    gv_bundle,
    \* @type: Bool;
    gv_sandbox,
    \* @type: Bool;
    gv_netns,
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
    \* @type: { m: Str, name: Str, arg: Str };
    event

NET == INSTANCE Network WITH net_extra <- 0

Statuses == {"none", "creating", "running", "stopped", "failed", "removed"}
\* The steps of the setup that can fail: writing the bundle, the network namespace, runsc run.
Steps == {"bundle", "netns", "run"}
\* The signals a supervisor forwards to the workload (and stop and kill send).
Signals == {"TERM", "KILL", "INT", "HUP", "QUIT", "USR1", "USR2"}
Ended == {"stopped", "failed"}

gv_vars == <<gv_status, gv_bundle, gv_sandbox, gv_netns>>
net_vars == <<net_bridged, net_user, net_egress, net_phase, net_done, net_held>>
vars == <<gv_vars, net_vars, event>>

\* The network is in place for runsc run: none to make, or the Network machine is ready.
NetReady == ~net_bridged \/ net_phase = "ready"
\* Nothing of the network is left: none was made, or it is released.
NetGone == ~net_bridged \/ net_phase = "released"

\* A user-mode network is for runs without root; runsc runs as root.
GvisorInit ==
    /\ gv_status = "none"
    /\ gv_bundle = FALSE
    /\ gv_sandbox = FALSE
    /\ gv_netns = FALSE
    /\ NET!NetInit
    /\ ~net_user

Create ==
    /\ gv_status = "none"
    /\ gv_status' = "creating"
    /\ UNCHANGED <<gv_bundle, gv_sandbox, gv_netns, net_vars>>

\* The bundle (config.json and the root it names) is on disk.
Written ==
    /\ gv_status = "creating"
    /\ ~gv_bundle
    /\ gv_bundle' = TRUE
    /\ UNCHANGED <<gv_status, gv_sandbox, gv_netns, net_vars>>

\* With a bridge: the container's network namespace is made, held by a process of the
\* supervisor's, where the bundle names it.
Netns ==
    /\ gv_status = "creating"
    /\ gv_bundle /\ net_bridged /\ ~gv_netns
    /\ gv_netns' = TRUE
    /\ UNCHANGED <<gv_status, gv_bundle, gv_sandbox, net_vars>>

\* runsc run has made the sandbox and started the workload.
Started ==
    /\ gv_status = "creating"
    /\ gv_bundle /\ ~gv_sandbox /\ NetReady
    /\ gv_status' = "running"
    /\ gv_sandbox' = TRUE
    /\ UNCHANGED <<gv_bundle, gv_netns, net_vars>>

\* A setup step failed. A failed runsc run may have left its state behind: the
\* cleanup deletes it all the same. (A failed namespace step leaves no process.)
Fail(s) ==
    /\ gv_status = "creating"
    /\ CASE s = "bundle" -> ~gv_bundle
         [] s = "netns" -> gv_bundle /\ net_bridged /\ ~gv_netns
         [] OTHER -> gv_bundle /\ ~gv_sandbox /\ NetReady
    /\ gv_status' = "failed"
    /\ gv_sandbox' = (s = "run")
    /\ UNCHANGED <<gv_bundle, gv_netns, net_vars>>

\* The network's steps while the container is created, in its namespace: a failed one fails
\* the container.
NetBegin ==
    /\ gv_status = "creating" /\ gv_netns
    /\ NET!Begin
    /\ UNCHANGED gv_vars

NetDone(s) ==
    /\ gv_status = "creating" /\ s # "teardown"
    /\ NET!Done(s)
    /\ UNCHANGED gv_vars

NetFail(s) ==
    /\ gv_status = "creating" /\ s # "teardown"
    /\ NET!Fail(s)
    /\ gv_status' = "failed"
    /\ UNCHANGED <<gv_bundle, gv_sandbox, gv_netns>>

Exit ==
    /\ gv_status = "running"
    /\ gv_status' = "stopped"
    /\ UNCHANGED <<gv_bundle, gv_sandbox, gv_netns, net_vars>>

\* A signal for the workload (runsc kill): nothing of the machine changes.
Kill(sig) ==
    /\ gv_status = "running"
    /\ UNCHANGED <<gv_vars, net_vars>>

\* A command run in the sandbox (runsc exec, for nucleus exec): nothing of the machine changes.
Exec ==
    /\ gv_status = "running"
    /\ UNCHANGED <<gv_vars, net_vars>>

\* The supervisor is gone while the container was active: once the bundle was
\* written and the network was in place, runsc run may have made a sandbox; a network step
\* under way will never report. (The namespace's process ends with the supervisor; its end
\* is still a cleanup step, which finds it gone.)
Lost ==
    /\ gv_status \in {"creating", "running"}
    /\ gv_status' = "failed"
    /\ gv_sandbox' = (gv_bundle /\ NetReady)
    /\ IF NET!UnderWay # "none" THEN NET!Abandon ELSE UNCHANGED net_vars
    /\ UNCHANGED <<gv_bundle, gv_netns>>

\* runsc delete --force: the sandbox, its state and its cgroups are gone.
Deleted ==
    /\ gv_status \in Ended
    /\ gv_sandbox
    /\ gv_sandbox' = FALSE
    /\ UNCHANGED <<gv_status, gv_bundle, gv_netns, net_vars>>

\* The network is released once no sandbox uses it; its teardown may fail (leaked).
NetRelease ==
    /\ gv_status \in Ended /\ ~gv_sandbox /\ net_bridged
    /\ NET!Release
    /\ UNCHANGED gv_vars

NetTorn ==
    /\ gv_status \in Ended
    /\ NET!Done("teardown")
    /\ UNCHANGED gv_vars

NetLeaked ==
    /\ gv_status \in Ended
    /\ NET!Fail("teardown")
    /\ UNCHANGED gv_vars

\* The namespace's process is ended, once the network in it is released.
Unshared ==
    /\ gv_status \in Ended
    /\ gv_netns /\ ~gv_sandbox /\ NetGone
    /\ gv_netns' = FALSE
    /\ UNCHANGED <<gv_status, gv_bundle, gv_sandbox, net_vars>>

\* The bundle is removed, after the sandbox that used it and the namespace it names.
Unbundled ==
    /\ gv_status \in Ended
    /\ gv_bundle /\ ~gv_sandbox /\ ~gv_netns /\ NetGone
    /\ gv_bundle' = FALSE
    /\ UNCHANGED <<gv_status, gv_sandbox, gv_netns, net_vars>>

\* Nothing of the container is left.
Gone == ~gv_bundle /\ ~gv_sandbox /\ ~gv_netns /\ NetGone

\* A cleanup left something: it is started again.
Sweep ==
    /\ gv_status \in Ended
    /\ ~Gone
    /\ UNCHANGED <<gv_vars, net_vars>>

Remove ==
    /\ gv_status \in Ended
    /\ Gone
    /\ gv_status' = "removed"
    /\ UNCHANGED <<gv_bundle, gv_sandbox, gv_netns, net_vars>>

Ev(machine, name, arg) == event' = [m |-> machine, name |-> name, arg |-> arg]

Init == GvisorInit /\ event = [m |-> "", name |-> "", arg |-> ""]

Next ==
    \/ Create /\ Ev("gv", "Create", "")
    \/ Written /\ Ev("gv", "Written", "")
    \/ Netns /\ Ev("gv", "Netns", "")
    \/ Started /\ Ev("gv", "Started", "")
    \/ \E s \in Steps : Fail(s) /\ Ev("gv", "Fail", s)
    \/ NetBegin /\ Ev("net", "Begin", "")
    \/ \E s \in NET!StepNames : NetDone(s) /\ Ev("net", "Done", s)
    \/ \E s \in NET!StepNames : NetFail(s) /\ Ev("net", "Fail", s)
    \/ Exit /\ Ev("gv", "Exit", "")
    \/ \E sig \in Signals : Kill(sig) /\ Ev("gv", "Kill", sig)
    \/ Exec /\ Ev("gv", "Exec", "")
    \/ Lost /\ Ev("gv", "Lost", "")
    \/ Deleted /\ Ev("gv", "Deleted", "")
    \/ NetRelease /\ Ev("net", "Release", "")
    \/ NetTorn /\ Ev("net", "Done", "teardown")
    \/ NetLeaked /\ Ev("net", "Fail", "teardown")
    \/ Unshared /\ Ev("gv", "Unshared", "")
    \/ Unbundled /\ Ev("gv", "Unbundled", "")
    \/ Sweep /\ Ev("gv", "Sweep", "")
    \/ Remove /\ Ev("gv", "Remove", "")

Spec == Init /\ [][Next]_vars

(* Invariants: the same names as in the machine. *)
TypeOK ==
    /\ gv_status \in Statuses
    /\ gv_bundle \in BOOLEAN
    /\ gv_sandbox \in BOOLEAN
    /\ gv_netns \in BOOLEAN
    /\ NET!TypeOK

\* The workload runs only in a sandbox made from a bundle on disk, on its network.
RunningHasSandbox == gv_status = "running" => gv_sandbox /\ gv_bundle /\ NetReady
\* The bundle is removed only after the sandbox made from it and the namespace it names.
SandboxNeedsBundle == (gv_sandbox \/ gv_netns) => gv_bundle
\* The network is made only in the container's namespace, and that namespace's process is
\* ended only once the network is released.
NetworkInNamespace == ~(net_phase \in {"idle", "released"}) => gv_netns
\* Nothing is left of a container never created, or removed.
RemovedLeavesNothing ==
    gv_status \in {"none", "removed"} =>
        ~gv_bundle /\ ~gv_sandbox /\ ~gv_netns /\ net_phase \in {"idle", "released"} /\ net_held = {}

Inv == TypeOK /\ RunningHasSandbox /\ SandboxNeedsBundle /\ NetworkInNamespace /\ RemovedLeavesNothing

(* Temporal: a removed container stays removed; an ended one never runs again. *)
NeverBackFromRemoved == [][gv_status = "removed" => gv_status' = "removed"]_vars
NeverRunsAgain == [][(gv_status \in Ended) => gv_status' \in Ended \union {"removed"}]_vars
=============================================================================
