------------------------------- MODULE Service -------------------------------
(***************************************************************************)
(* A long-running service's health, readiness and restarts around the     *)
(* System machine's runs, mirrored by nucleus/machines/service.py.        *)
(*                                                                         *)
(* Health is "starting" until a check passes, "healthy" after a passing   *)
(* check, "unhealthy" once Retries checks in a row have failed; a failure *)
(* within the start period leaves "starting" as it is. Becoming unhealthy *)
(* ends the workload unless --health-on-unhealthy is none. READY=1 is     *)
(* said at most once per service: at the first start without a readiness *)
(* condition, else at the first readiness (never by the supervisor when   *)
(* the workload says it itself). When the workload ends the restart       *)
(* policy decides; after a stop request nothing starts again.             *)
(*                                                                         *)
(* Counts are bounded: the failing streak saturates at Retries and the    *)
(* restart count at MaxCount (the code counts on; its abstraction         *)
(* saturates alike). The backoff's delays are timing, below the grain.    *)
(***************************************************************************)
EXTENDS Integers

VARIABLES
    \* @type: Bool;
    svc_checked,
    \* @type: Str;
    svc_policy,
    \* @type: Int;
    svc_limit,
    \* @type: Str;
    svc_on_unhealthy,
    \* @type: Bool;
    svc_notify,
    \* @type: Str;
    svc_gated,
    \* @type: Str;
    svc_phase,
    \* @type: Str;
    svc_health,
    \* @type: Int;
    svc_streak,
    \* @type: Bool;
    svc_ready,
    \* @type: Int;
    svc_notified,
    \* @type: Bool;
    svc_stopping,
    \* @type: Bool;
    svc_unhealthy_end,
    \* @type: Int;
    svc_restarts,
    \* @type: { m: Str, name: Str, arg: Str };
    event

Retries == 2
MaxCount == 2
\* on-failure:1, and -1: on-failure without a limit (and for no and always).
Limits == {-1, 1}
Policies == {"no", "on-failure", "always"}
OnUnhealthy == {"restart", "stop", "none"}
\* What readiness waits for: nothing, a probe (--readiness-exec, --readiness-tcp), or the
\* workload's own READY=1 (--readiness-sd-notify).
Gates == {"none", "probe", "workload"}
Phases == {"starting", "running", "waiting", "finished"}
Healths == {"none", "starting", "healthy", "unhealthy"}
CheckResults == {"pass", "fail", "early"}
EndResults == {"ok", "failed"}

params == <<svc_checked, svc_policy, svc_limit, svc_on_unhealthy, svc_notify, svc_gated>>
vars == <<svc_checked, svc_policy, svc_limit, svc_on_unhealthy, svc_notify, svc_gated, svc_phase,
          svc_health, svc_streak, svc_ready, svc_notified, svc_stopping, svc_unhealthy_end,
          svc_restarts, event>>

Bump(n, cap) == IF n < cap THEN n + 1 ELSE n
StartHealth == IF svc_checked THEN "starting" ELSE "none"

\* The options validation lets through (nucleus/config/service.py): the health flags need a
\* check, an unhealthy service is restarted only under a restart policy, a limit only for
\* on-failure, the workload's READY=1 only with sd_notify, and the supervisor has something
\* to do.
ServiceInit ==
    /\ svc_checked \in BOOLEAN
    /\ svc_policy \in Policies
    /\ svc_limit \in IF svc_policy = "on-failure" THEN Limits ELSE {-1}
    /\ svc_on_unhealthy \in IF ~svc_checked THEN {"none"}
                            ELSE IF svc_policy = "no" THEN {"stop", "none"} ELSE OnUnhealthy
    /\ svc_notify \in BOOLEAN
    /\ svc_gated \in IF svc_notify THEN Gates ELSE {"none", "probe"}
    /\ ~(~svc_checked /\ svc_policy = "no" /\ ~svc_notify /\ svc_gated = "none")
    /\ svc_phase = "starting"
    /\ svc_health = StartHealth
    /\ svc_streak = 0
    /\ svc_ready = FALSE
    /\ svc_notified = 0
    /\ svc_stopping = FALSE
    /\ svc_unhealthy_end = FALSE
    /\ svc_restarts = 0

\* The workload (of the first run or of a restart) has started.
Started ==
    /\ svc_phase \in {"starting", "waiting"}
    /\ ~svc_stopping
    /\ svc_phase' = "running"
    /\ svc_health' = StartHealth
    /\ svc_streak' = 0
    /\ svc_unhealthy_end' = FALSE
    /\ IF ~svc_ready /\ svc_gated = "none" /\ svc_notify
       THEN /\ svc_ready' = TRUE
            /\ svc_notified' = svc_notified + 1
       ELSE UNCHANGED <<svc_ready, svc_notified>>
    /\ UNCHANGED <<params, svc_stopping, svc_restarts>>

\* The readiness condition holds.
Ready ==
    /\ svc_phase = "running"
    /\ IF svc_ready
       THEN UNCHANGED <<svc_ready, svc_notified>>
       ELSE /\ svc_ready' = TRUE
            /\ svc_notified' = IF svc_notify /\ svc_gated # "workload" THEN svc_notified + 1 ELSE svc_notified
    /\ UNCHANGED <<params, svc_phase, svc_health, svc_streak, svc_stopping, svc_unhealthy_end, svc_restarts>>

\* A failed check that counts: the streak grows; at Retries the service is unhealthy, and
\* (unless on-unhealthy is none, or a stop was asked) its workload is ended.
Counted ==
    /\ svc_streak' = Bump(svc_streak, Retries)
    /\ IF svc_health = "unhealthy" \/ svc_streak + 1 < Retries
       THEN UNCHANGED <<svc_health, svc_stopping, svc_unhealthy_end>>
       ELSE /\ svc_health' = "unhealthy"
            /\ IF svc_on_unhealthy = "none" \/ svc_stopping
               THEN UNCHANGED <<svc_stopping, svc_unhealthy_end>>
               ELSE /\ svc_unhealthy_end' = TRUE
                    /\ svc_stopping' = (svc_on_unhealthy = "stop")

\* A health check ended: passed, failed, or failed within the start period.
CheckDone(r) ==
    /\ svc_phase = "running"
    /\ svc_checked
    /\ CASE r = "pass" -> /\ svc_health' = "healthy"
                          /\ svc_streak' = 0
                          /\ UNCHANGED <<svc_stopping, svc_unhealthy_end>>
         [] r = "early" /\ svc_health = "starting" -> UNCHANGED <<svc_health, svc_streak, svc_stopping, svc_unhealthy_end>>
         [] OTHER -> Counted
    /\ UNCHANGED <<params, svc_phase, svc_ready, svc_notified, svc_restarts>>

\* stop, kill or rm asked the service to end: it never starts again.
StopAsked ==
    /\ CASE svc_phase = "finished" -> UNCHANGED <<svc_phase, svc_stopping>>
         [] svc_phase = "waiting" -> /\ svc_phase' = "finished"
                                     /\ svc_stopping' = TRUE
         [] OTHER -> /\ svc_stopping' = TRUE
                     /\ UNCHANGED svc_phase
    /\ UNCHANGED <<params, svc_health, svc_streak, svc_ready, svc_notified, svc_unhealthy_end, svc_restarts>>

\* Whether the policy starts the workload again after it ended (`failed`: its status was not 0).
Restarts(failed) ==
    /\ ~svc_stopping
    /\ \/ svc_policy = "always"
       \/ /\ svc_policy = "on-failure"
          /\ failed \/ svc_unhealthy_end
          /\ svc_limit < 0 \/ svc_restarts < svc_limit

\* The workload ended (a run that never started it, while waiting to restart, too).
Ended(r) ==
    /\ svc_phase \in {"starting", "running", "waiting"}
    /\ IF Restarts(r = "failed")
       THEN /\ svc_phase' = "waiting"
            /\ svc_restarts' = Bump(svc_restarts, MaxCount)
       ELSE /\ svc_phase' = "finished"
            /\ UNCHANGED svc_restarts
    /\ UNCHANGED <<params, svc_health, svc_streak, svc_ready, svc_notified, svc_stopping, svc_unhealthy_end>>

Ev(name, arg) == event' = [m |-> "svc", name |-> name, arg |-> arg]

Init == ServiceInit /\ event = [m |-> "", name |-> "", arg |-> ""]

Next ==
    \/ Started /\ Ev("Started", "")
    \/ Ready /\ Ev("Ready", "")
    \/ \E r \in CheckResults : CheckDone(r) /\ Ev("CheckDone", r)
    \/ StopAsked /\ Ev("StopAsked", "")
    \/ \E r \in EndResults : Ended(r) /\ Ev("Ended", r)

Spec == Init /\ [][Next]_vars

(* Invariants: the same names as in the machine. *)
TypeOK ==
    /\ svc_checked \in BOOLEAN
    /\ svc_policy \in Policies
    /\ svc_limit \in Limits
    /\ svc_on_unhealthy \in OnUnhealthy
    /\ svc_notify \in BOOLEAN
    /\ svc_gated \in Gates
    /\ svc_phase \in Phases
    /\ svc_health \in Healths
    /\ svc_streak \in 0..Retries
    /\ svc_ready \in BOOLEAN
    /\ svc_notified \in 0..MaxCount
    /\ svc_stopping \in BOOLEAN
    /\ svc_unhealthy_end \in BOOLEAN
    /\ svc_restarts \in 0..MaxCount

\* Health is reported only with a check, and then always.
HealthOnlyIfChecked == (svc_health = "none") = ~svc_checked

\* Unhealthy only after Retries failures in a row.
UnhealthyAfterRetries == svc_health = "unhealthy" => svc_checked /\ svc_streak >= Retries

\* on-failure:N never restarts more than N times; no never restarts.
BoundedRestarts ==
    /\ svc_policy = "no" => svc_restarts = 0
    /\ svc_policy = "on-failure" /\ svc_limit >= 0 => svc_restarts <= svc_limit

\* A service asked to stop never waits for a restart.
StoppedStaysStopped == ~(svc_stopping /\ svc_phase = "waiting")

\* READY=1 is said at most once per service, only when asked, and only once it is ready.
ReadyOnce == svc_notified <= 1
ReadyOnlyWhenReady == svc_notified > 0 => svc_ready /\ svc_notify /\ svc_gated # "workload"

Inv ==
    /\ TypeOK /\ HealthOnlyIfChecked /\ UnhealthyAfterRetries /\ BoundedRestarts
    /\ StoppedStaysStopped /\ ReadyOnce /\ ReadyOnlyWhenReady

(* Temporal: a stop request is never withdrawn, and a finished service stays finished. *)
StopIsFinal ==
    [][/\ svc_stopping => svc_stopping'
       /\ svc_phase = "finished" => svc_phase' = "finished"]_vars
=============================================================================
