------------------------------- MODULE Topology -------------------------------
(***************************************************************************)
(* A topology's services brought up, reconciled and brought down          *)
(* (`nucleus compose up|down`), mirrored by nucleus/machines/topology.py. *)
(* Each service is a process of the spec with a status; the machine acts *)
(* on one service at a time (a start or a stop under way) while health   *)
(* checks of services already started are awaited.                        *)
(*                                                                         *)
(* Up first stops what must go (a service no longer in the file, one      *)
(* whose configuration changed: topo_stale), last in dependency order     *)
(* first; then starts every wanted service that is not running, in        *)
(* dependency order, each once its dependencies are started or healthy   *)
(* as its depends_on asks. A failure (a start refused, a health check    *)
(* that never passed) rolls back what this up started, unless keep-going *)
(* (then the failed service is stopped, its dependents never start and   *)
(* the rest keep running). Down stops every running service, dependents  *)
(* before their dependencies.                                              *)
(*                                                                         *)
(* The graph is fixed at three services: api waits for db to be healthy, *)
(* web for api to be started; db has a health check.                     *)
(***************************************************************************)
EXTENDS Naturals, Sequences, FiniteSets

VARIABLES
    \* @type: Set(Str);
    topo_wanted,
    \* @type: Set(Str);
    topo_stale,
    \* @type: Bool;
    topo_keep_going,
    \* @type: Str;
    topo_phase,
    \* @type: Str -> Str;
    topo_svc,
    \* @type: Set(Str);
    topo_started,
    \* @type: Set(Str);
    topo_failed,
    \* @type: { m: Str, name: Str, arg: Str };
    event

Services == {"db", "api", "web"}
\* The services in dependency order (a dependency before its dependents).
Order == <<"db", "api", "web">>
NumServices == 3
HealthChecked == {"db"}
\* <<service, dependency, condition>>
Deps == {<<"api", "db", "healthy">>, <<"web", "api", "started">>}
Statuses == {"absent", "starting", "started", "healthy", "stopping"}
Phases == {"idle", "up", "rollback", "down", "running", "partial", "failed", "stopped"}
Settled == {"idle", "running", "partial", "failed", "stopped"}

topo_vars == <<topo_wanted, topo_stale, topo_keep_going, topo_phase, topo_svc, topo_started, topo_failed>>
vars == <<topo_wanted, topo_stale, topo_keep_going, topo_phase, topo_svc, topo_started, topo_failed, event>>

Live(v) == {s \in Services : v[s] \in {"started", "healthy"}}
Busy(v) == \E s \in Services : v[s] \in {"starting", "stopping"}
\* The services whose health check up waits for: in the file, started, and not to be stopped.
Awaited(v, stale) == {s \in HealthChecked \cap topo_wanted : v[s] = "started" /\ s \notin stale}
Satisfied(v, d, c) == IF c = "healthy" THEN v[d] = "healthy" ELSE v[d] \in {"started", "healthy"}
GateOpen(v, s) == \A e \in Deps : e[1] = s => Satisfied(v, e[2], e[3])
\* The status a service settles in once started: healthy when it has a health check.
Settles(s) == IF s \in HealthChecked THEN "healthy" ELSE "started"
First(S) == Order[CHOOSE i \in 1..NumServices : Order[i] \in S /\ \A j \in 1..NumServices : j < i => Order[j] \notin S]
Last(S) == Order[CHOOSE i \in 1..NumServices : Order[i] \in S /\ \A j \in 1..NumServices : j > i => Order[j] \notin S]

\* The running services that phase `ph` stops.
Doomed(v, ph, stale, started, failed) ==
    CASE ph = "up" -> {s \in Live(v) : s \notin topo_wanted \/ s \in stale \/ s \in failed}
      [] ph = "rollback" -> Live(v) \cap started
      [] OTHER -> Live(v)

\* The services up may start now: wanted, not running, not failed, their dependencies met.
Ready(v, ph, failed) ==
    IF ph = "up" THEN {s \in topo_wanted : v[s] = "absent" /\ s \notin failed /\ GateOpen(v, s)} ELSE {}

Finished(ph, failed) ==
    CASE ph = "up" -> IF failed = {} THEN "running" ELSE "partial"
      [] ph = "rollback" -> "failed"
      [] OTHER -> "stopped"

\* What the machine does next in phase `ph`, the services' statuses being `v`: wait for the
\* start or stop under way, stop one service, start one, wait for health checks, or finish.
Advance(v, ph, stale, started, failed) ==
    LET doomed == Doomed(v, ph, stale, started, failed)
        ready == Ready(v, ph, failed)
    IN IF Busy(v) \/ (doomed = {} /\ ready = {} /\ ph = "up" /\ Awaited(v, stale) # {})
       THEN /\ topo_svc' = v
            /\ topo_phase' = ph
            /\ topo_started' = started
       ELSE IF doomed # {}
       THEN /\ topo_svc' = [v EXCEPT ![Last(doomed)] = "stopping"]
            /\ topo_phase' = ph
            /\ topo_started' = started
       ELSE IF ready # {}
       THEN /\ topo_svc' = [v EXCEPT ![First(ready)] = "starting"]
            /\ topo_phase' = ph
            /\ topo_started' = started \cup {First(ready)}
       ELSE /\ topo_svc' = v
            /\ topo_phase' = Finished(ph, failed)
            /\ topo_started' = started

\* The services in the file are closed under dependencies (compose validate refuses the rest);
\* what runs from an earlier up is started, or healthy once its health check passed; a
\* running service in the file whose configuration changed is stale.
TopologyInit ==
    /\ topo_wanted \in {w \in SUBSET Services : \A e \in Deps : e[1] \in w => e[2] \in w}
    /\ topo_svc \in {v \in [Services -> {"absent", "started", "healthy"}] :
                        \A s \in Services : v[s] = "healthy" => s \in HealthChecked}
    /\ topo_stale \in SUBSET (Live(topo_svc) \cap topo_wanted)
    /\ topo_keep_going \in BOOLEAN
    /\ topo_phase = "idle"
    /\ topo_started = {}
    /\ topo_failed = {}

Up ==
    /\ topo_phase \in Settled
    /\ topo_failed' = {}
    /\ Advance(topo_svc, "up", topo_stale, {}, {})
    /\ UNCHANGED <<topo_wanted, topo_stale, topo_keep_going>>

Down ==
    /\ topo_phase \in Settled
    /\ Advance(topo_svc, "down", topo_stale, topo_started, topo_failed)
    /\ UNCHANGED <<topo_wanted, topo_stale, topo_keep_going, topo_failed>>

\* The service's container runs (`run -d` printed its id).
Started(s) ==
    /\ topo_phase \in {"up", "rollback"}
    /\ topo_svc[s] = "starting"
    /\ Advance([topo_svc EXCEPT ![s] = "started"], topo_phase, topo_stale, topo_started, topo_failed)
    /\ UNCHANGED <<topo_wanted, topo_stale, topo_keep_going, topo_failed>>

\* Its health check passed.
Healthy(s) ==
    /\ topo_phase \in {"up", "rollback"}
    /\ s \in Awaited(topo_svc, topo_stale)
    /\ Advance([topo_svc EXCEPT ![s] = "healthy"], topo_phase, topo_stale, topo_started, topo_failed)
    /\ UNCHANGED <<topo_wanted, topo_stale, topo_keep_going, topo_failed>>

\* Its start was refused (nothing of it is left), or its health check never passed in time
\* (it runs, and is stopped).
Failed(s) ==
    /\ topo_phase \in {"up", "rollback"}
    /\ \/ topo_svc[s] = "starting"
       \/ s \in Awaited(topo_svc, topo_stale)
    /\ LET ph == IF topo_phase = "up" /\ ~topo_keep_going THEN "rollback" ELSE topo_phase
           v == [topo_svc EXCEPT ![s] = IF topo_svc[s] = "starting" THEN "absent" ELSE "started"]
       IN /\ topo_failed' = topo_failed \cup {s}
          /\ Advance(v, ph, topo_stale, topo_started, topo_failed \cup {s})
    /\ UNCHANGED <<topo_wanted, topo_stale, topo_keep_going>>

\* Its container is stopped and removed.
Stopped(s) ==
    /\ topo_phase \in {"up", "rollback", "down"}
    /\ topo_svc[s] = "stopping"
    /\ topo_stale' = topo_stale \ {s}
    /\ Advance([topo_svc EXCEPT ![s] = "absent"], topo_phase, topo_stale \ {s}, topo_started, topo_failed)
    /\ UNCHANGED <<topo_wanted, topo_keep_going, topo_failed>>

Ev(name, arg) == event' = [m |-> "topo", name |-> name, arg |-> arg]

Init == TopologyInit /\ event = [m |-> "", name |-> "", arg |-> ""]

Next ==
    \/ Up /\ Ev("Up", "")
    \/ Down /\ Ev("Down", "")
    \/ \E s \in Services : Started(s) /\ Ev("Started", s)
    \/ \E s \in Services : Healthy(s) /\ Ev("Healthy", s)
    \/ \E s \in Services : Failed(s) /\ Ev("Failed", s)
    \/ \E s \in Services : Stopped(s) /\ Ev("Stopped", s)

Spec == Init /\ [][Next]_vars

(* Invariants: the same names as in the machine. *)
TypeOK ==
    /\ topo_wanted \subseteq Services
    /\ topo_stale \subseteq Services
    /\ topo_keep_going \in BOOLEAN
    /\ topo_phase \in Phases
    /\ topo_svc \in [Services -> Statuses]
    /\ topo_started \subseteq Services
    /\ topo_failed \subseteq Services

\* At most one start or stop under way.
OneAtATime == Cardinality({s \in Services : topo_svc[s] \in {"starting", "stopping"}}) <= 1

\* A service is started only once its dependencies are as its depends_on asks.
StartsAfterDependencies == \A e \in Deps : topo_svc[e[1]] = "starting" => Satisfied(topo_svc, e[2], e[3])

\* Down stops a service only once its dependents are gone.
DownStopsDependentsFirst ==
    topo_phase = "down" => \A e \in Deps : topo_svc[e[2]] = "stopping" => topo_svc[e[1]] = "absent"

\* Reconciliation stops only what left the file, changed, or failed.
ReconcileKeepsUnchanged ==
    topo_phase = "up" =>
        \A s \in Services : topo_svc[s] = "stopping" => s \notin topo_wanted \/ s \in topo_stale \/ s \in topo_failed

\* A rollback stops only what this up started (or a stop of reconciliation still under way),
\* and ends with all of it gone.
RollbackStopsOnlyItsOwn ==
    topo_phase = "rollback" =>
        \A s \in Services : topo_svc[s] = "stopping" => s \in topo_started \/ s \notin topo_wanted \/ s \in topo_stale
FailureStopsWhatUpStarted == topo_phase = "failed" => \A s \in topo_started : topo_svc[s] = "absent"

\* Only keep-going finishes an up with failures; a finished up runs exactly the wanted services.
PartialOnlyKeepGoing == topo_phase = "partial" => topo_keep_going /\ topo_failed # {}
RunningMeansWanted ==
    topo_phase = "running" =>
        \A s \in Services : topo_svc[s] = IF s \in topo_wanted THEN Settles(s) ELSE "absent"
StoppedMeansNothingRuns == topo_phase = "stopped" => \A s \in Services : topo_svc[s] = "absent"

Inv ==
    /\ TypeOK /\ OneAtATime /\ StartsAfterDependencies /\ DownStopsDependentsFirst
    /\ ReconcileKeepsUnchanged /\ RollbackStopsOnlyItsOwn /\ FailureStopsWhatUpStarted
    /\ PartialOnlyKeepGoing /\ RunningMeansWanted /\ StoppedMeansNothingRuns

(* Temporal: a changed service, once recreated, is changed no more. *)
StaleShrinks == [][topo_stale' \subseteq topo_stale]_vars
=============================================================================
