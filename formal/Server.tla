------------------------------- MODULE Server -------------------------------
(***************************************************************************)
(* `nucleus serve`: the requests a resident server accepts or refuses, the *)
(* sandboxes it owns, its shutdown and its crash, mirrored by              *)
(* nucleus/machines/server.py.                                             *)
(*                                                                         *)
(* A caller of the server's own uid ("owner") is served; another uid       *)
(* ("other") only by a server that runs as root, whose child takes the     *)
(* caller's identity before it reads the request. A sandbox is created by *)
(* a request, started (the server forks its supervisor, which is exactly  *)
(* a cold `nucleus run`: it writes its own record before it changes       *)
(* anything on the host), runs, exits, and is removed by its caller; a    *)
(* caller that hangs up stops waiting for it. Shutdown stops accepting,   *)
(* signals every running supervisor and waits for them, up to a deadline; *)
(* a supervisor still running then, or when the server crashes, is an     *)
(* orphan: an ordinary supervisor with its record, which `nucleus ps` and *)
(* `rm --force` reclaim. A crash leaves the socket stale; a successor     *)
(* reclaims it.                                                            *)
(***************************************************************************)
EXTENDS Integers

VARIABLES
    \* @type: Bool;
    srv_root,
    \* @type: Str;
    srv_phase,
    \* @type: Str;
    srv_socket,
    \* @type: Str -> Str;
    srv_sb,
    \* @type: Str -> Str;
    srv_caller,
    \* @type: Set(Str);
    srv_attached,
    \* @type: Set(Str);
    srv_orphans,
    \* @type: Int;
    srv_refused,
    \* @type: { m: Str, name: Str, arg: Str };
    event

Sandboxes == {"s1", "s2"}
MaxCount == 2
Callers == {"owner", "other"}
Phases == {"serving", "draining", "stopped", "crashed"}
Sockets == {"live", "stale", "none"}
Statuses == {"none", "created", "running", "exited"}

vars == <<srv_root, srv_phase, srv_socket, srv_sb, srv_caller, srv_attached, srv_orphans,
          srv_refused, event>>

Bump(n) == IF n < MaxCount THEN n + 1 ELSE n
\* A sandbox id is free when neither the server nor an orphan holds it; the first is taken.
Free == {s \in Sandboxes : srv_sb[s] = "none" /\ s \notin srv_orphans}
NextId == IF "s1" \in Free THEN "s1" ELSE "s2"
Running == {s \in Sandboxes : srv_sb[s] = "running"}
Allowed(who) == who = "owner" \/ srv_root
Live == srv_phase \in {"serving", "draining"}

ServerInit ==
    /\ srv_root \in BOOLEAN
    /\ srv_phase = "serving"
    /\ srv_socket = "live"
    /\ srv_sb = [s \in Sandboxes |-> "none"]
    /\ srv_caller = [s \in Sandboxes |-> ""]
    /\ srv_attached = {}
    /\ srv_orphans = {}
    /\ srv_refused = 0

\* A caller asks for a sandbox: served if the server accepts and its uid may be served, else
\* refused (the caller is told why).
Create(who) ==
    /\ Live
    /\ IF srv_phase = "serving" /\ Allowed(who) /\ Free # {}
       THEN /\ srv_sb' = [srv_sb EXCEPT ![NextId] = "created"]
            /\ srv_caller' = [srv_caller EXCEPT ![NextId] = who]
            /\ srv_attached' = srv_attached \cup {NextId}
            /\ UNCHANGED srv_refused
       ELSE /\ srv_refused' = Bump(srv_refused)
            /\ UNCHANGED <<srv_sb, srv_caller, srv_attached>>
    /\ UNCHANGED <<srv_root, srv_phase, srv_socket, srv_orphans>>

\* The caller's stdio arrived: the server forks the sandbox's supervisor.
Start(s) ==
    /\ srv_phase = "serving"
    /\ srv_sb[s] = "created"
    /\ s \in srv_attached
    /\ srv_sb' = [srv_sb EXCEPT ![s] = "running"]
    /\ UNCHANGED <<srv_root, srv_phase, srv_socket, srv_caller, srv_attached, srv_orphans, srv_refused>>

\* A signal from the caller, forwarded to the supervisor.
Signal(s) ==
    /\ Live
    /\ srv_sb[s] = "running"
    /\ s \in srv_attached
    /\ UNCHANGED <<srv_root, srv_phase, srv_socket, srv_sb, srv_caller, srv_attached, srv_orphans, srv_refused>>

\* The supervisor exited (the server reaped it): its caller is told the status; a sandbox no
\* one waits for, or of a draining server, is gone; the last one ends the shutdown.
Exited(s) ==
    /\ Live
    /\ srv_sb[s] = "running"
    /\ LET gone == srv_phase = "draining" \/ s \notin srv_attached
       IN /\ srv_sb' = [srv_sb EXCEPT ![s] = IF gone THEN "none" ELSE "exited"]
          /\ srv_caller' = IF gone THEN [srv_caller EXCEPT ![s] = ""] ELSE srv_caller
          /\ srv_attached' = IF gone THEN srv_attached \ {s} ELSE srv_attached
    /\ IF srv_phase = "draining" /\ Running = {s}
       THEN /\ srv_phase' = "stopped"
            /\ srv_socket' = "none"
       ELSE UNCHANGED <<srv_phase, srv_socket>>
    /\ UNCHANGED <<srv_root, srv_orphans, srv_refused>>

\* The caller removes a sandbox that is not running.
Remove(s) ==
    /\ Live
    /\ s \in srv_attached
    /\ srv_sb[s] \in {"created", "exited"}
    /\ srv_sb' = [srv_sb EXCEPT ![s] = "none"]
    /\ srv_caller' = [srv_caller EXCEPT ![s] = ""]
    /\ srv_attached' = srv_attached \ {s}
    /\ UNCHANGED <<srv_root, srv_phase, srv_socket, srv_orphans, srv_refused>>

\* The caller's connection closed: a running supervisor is asked to end (as a cold run is when
\* its terminal goes), anything else is removed.
Hangup(s) ==
    /\ Live
    /\ s \in srv_attached
    /\ srv_attached' = srv_attached \ {s}
    /\ IF srv_sb[s] = "running"
       THEN UNCHANGED <<srv_sb, srv_caller>>
       ELSE /\ srv_sb' = [srv_sb EXCEPT ![s] = "none"]
            /\ srv_caller' = [srv_caller EXCEPT ![s] = ""]
    /\ UNCHANGED <<srv_root, srv_phase, srv_socket, srv_orphans, srv_refused>>

\* SIGTERM: stop accepting, drop what does not run, ask every running supervisor to end.
Shutdown ==
    /\ srv_phase = "serving"
    /\ srv_sb' = [s \in Sandboxes |-> IF srv_sb[s] = "running" THEN "running" ELSE "none"]
    /\ srv_caller' = [s \in Sandboxes |-> IF srv_sb[s] = "running" THEN srv_caller[s] ELSE ""]
    /\ srv_attached' = srv_attached \cap Running
    /\ IF Running = {}
       THEN /\ srv_phase' = "stopped"
            /\ srv_socket' = "none"
       ELSE /\ srv_phase' = "draining"
            /\ UNCHANGED srv_socket
    /\ UNCHANGED <<srv_root, srv_orphans, srv_refused>>

\* The shutdown's wait is over: the server leaves; a supervisor still ending is an orphan.
Deadline ==
    /\ srv_phase = "draining"
    /\ srv_phase' = "stopped"
    /\ srv_socket' = "none"
    /\ srv_orphans' = srv_orphans \cup Running
    /\ srv_sb' = [s \in Sandboxes |-> "none"]
    /\ srv_caller' = [s \in Sandboxes |-> ""]
    /\ srv_attached' = {}
    /\ UNCHANGED <<srv_root, srv_refused>>

\* SIGKILL (or any crash): the socket's file stays, the running supervisors are orphans.
Crash ==
    /\ Live
    /\ srv_phase' = "crashed"
    /\ srv_socket' = "stale"
    /\ srv_orphans' = srv_orphans \cup Running
    /\ srv_sb' = [s \in Sandboxes |-> "none"]
    /\ srv_caller' = [s \in Sandboxes |-> ""]
    /\ srv_attached' = {}
    /\ UNCHANGED <<srv_root, srv_refused>>

\* A successor starts on the crashed server's socket: nothing answers there, so it is replaced.
Reclaim ==
    /\ srv_phase = "crashed"
    /\ srv_phase' = "serving"
    /\ srv_socket' = "live"
    /\ UNCHANGED <<srv_root, srv_sb, srv_caller, srv_attached, srv_orphans, srv_refused>>

\* An orphan ended on its own, or `nucleus rm --force` reclaimed it.
Swept(s) ==
    /\ s \in srv_orphans
    /\ srv_orphans' = srv_orphans \ {s}
    /\ UNCHANGED <<srv_root, srv_phase, srv_socket, srv_sb, srv_caller, srv_attached, srv_refused>>

Ev(name, arg) == event' = [m |-> "srv", name |-> name, arg |-> arg]

Init == ServerInit /\ event = [m |-> "", name |-> "", arg |-> ""]

Next ==
    \/ \E who \in Callers : Create(who) /\ Ev("Create", who)
    \/ \E s \in Sandboxes : Start(s) /\ Ev("Start", s)
    \/ \E s \in Sandboxes : Signal(s) /\ Ev("Signal", s)
    \/ \E s \in Sandboxes : Exited(s) /\ Ev("Exited", s)
    \/ \E s \in Sandboxes : Remove(s) /\ Ev("Remove", s)
    \/ \E s \in Sandboxes : Hangup(s) /\ Ev("Hangup", s)
    \/ Shutdown /\ Ev("Shutdown", "")
    \/ Deadline /\ Ev("Deadline", "")
    \/ Crash /\ Ev("Crash", "")
    \/ Reclaim /\ Ev("Reclaim", "")
    \/ \E s \in Sandboxes : Swept(s) /\ Ev("Swept", s)

Spec == Init /\ [][Next]_vars

(* Invariants: the same names as in the machine. *)
TypeOK ==
    /\ srv_root \in BOOLEAN
    /\ srv_phase \in Phases
    /\ srv_socket \in Sockets
    /\ srv_sb \in [Sandboxes -> Statuses]
    /\ srv_caller \in [Sandboxes -> Callers \cup {""}]
    /\ srv_attached \subseteq Sandboxes
    /\ srv_orphans \subseteq Sandboxes
    /\ srv_refused \in 0..MaxCount

\* Only a root server serves another uid (and its child takes that uid before anything else).
CallersAllowed == \A s \in Sandboxes : srv_caller[s] = "other" => srv_root

\* Every sandbox the server holds has its caller; a connection belongs to a sandbox it holds.
CallerKnown == \A s \in Sandboxes : (srv_sb[s] = "none") = (srv_caller[s] = "")
AttachedOnlyToSandboxes == \A s \in srv_attached : srv_sb[s] # "none"

\* Nothing is kept for a caller who left: only a running supervisor outlives its connection.
NothingKeptForNoOne == \A s \in Sandboxes : srv_sb[s] \in {"created", "exited"} => s \in srv_attached

\* A server that is not serving holds only running supervisors, and draining has some.
DrainingHoldsOnlyRunning ==
    /\ srv_phase # "serving" => \A s \in Sandboxes : srv_sb[s] \in {"none", "running"}
    /\ srv_phase = "draining" => Running # {}

\* A stopped server leaves nothing: no socket, no sandbox.
StoppedLeavesNothing == srv_phase = "stopped" => srv_socket = "none" /\ \A s \in Sandboxes : srv_sb[s] = "none"

\* A crashed server holds nothing either: what it leaves is a stale socket, which its successor
\* reclaims, and orphans, each an ordinary supervisor with its record.
CrashLeavesOnlySupervisors ==
    srv_phase = "crashed" => srv_socket = "stale" /\ \A s \in Sandboxes : srv_sb[s] = "none"

\* An orphan is never also the server's.
OrphansAreNotServed == \A s \in srv_orphans : srv_sb[s] = "none"

Inv ==
    /\ TypeOK /\ CallersAllowed /\ CallerKnown /\ AttachedOnlyToSandboxes /\ NothingKeptForNoOne
    /\ DrainingHoldsOnlyRunning /\ StoppedLeavesNothing /\ CrashLeavesOnlySupervisors
    /\ OrphansAreNotServed

(* Temporal: only a started supervisor (which wrote its record before it changed anything on *)
(* the host) is ever left behind, and a stopped server stays stopped.                         *)
OrphansWereRunning == [][\A s \in srv_orphans' \ srv_orphans : srv_sb[s] = "running"]_vars
StopIsFinal == [][srv_phase = "stopped" => srv_phase' = "stopped"]_vars
=============================================================================
