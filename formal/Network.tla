------------------------------- MODULE Network -------------------------------
(***************************************************************************)
(* The container's network, mirrored by nucleus/machines/network.py.      *)
(* Without a link of its own (--network none: the container's own         *)
(* namespace with only lo; --network host: the host's) the plan is empty. *)
(* With a bridge: the host side first (the bridge and the container's     *)
(* addresses, the veth pair, NAT and forwarding, and with an egress       *)
(* policy its rules and its proxy), then the container side (the address, *)
(* the link up, the default route). A user-mode network (--network user:  *)
(* pasta or slirp4netns, for runs without root) has no bridge: its host   *)
(* side is the user-mode stack's process (usernet); with an egress policy *)
(* the proxy comes first and the policy's rules are made inside the       *)
(* container's namespace (filter) before the stack's interface exists.    *)
(* What a host-side step makes stays on the host until the teardown       *)
(* removes it: net_held. A step that fails, or is abandoned with its      *)
(* supervisor, may have left part of what it makes, so it counts as held  *)
(* too; the teardown after a failure removes what came before. A failed   *)
(* teardown leaves the network "leaked" until a later Release.            *)
(* A bridged container may be attached to more bridges than its first     *)
(* (net_extra of them: compose's services on several networks): each is   *)
(* one host step, "attach" (its bridge, the bridge's own rules and an      *)
(* address lease, and a veth pair into the container), made after the     *)
(* first bridge's NAT and before the egress policy, which covers every     *)
(* attachment's addresses; and one step inside, "join" (the interface's    *)
(* address, the link up), after the first interface is up and before the  *)
(* default route (through the first). System composes this module at its  *)
(* NetExtra (0 when model-checked), Gvisor at 0: more attachments change   *)
(* only this machine's plan, checked here, and the network's phase, which *)
(* is all the others wait on.                                             *)
(***************************************************************************)
EXTENDS Naturals, Sequences, FiniteSets

VARIABLES
    \* @type: Bool;
    net_bridged,
    \* @type: Bool;
    net_user,
    \* @type: Bool;
    net_egress,
    \* @type: Int;
    net_extra,
    \* @type: Str;
    net_phase,
    \* @type: Int;
    net_done,
    \* @type: Set(Str);
    net_held,
    \* @type: { m: Str, name: Str, arg: Str };
    event

\* The attachments beyond the first that the model checks (the code takes up to 8).
MaxExtra == 2
\* @type: (Str, Int) => Seq(Str);
Times(s, k) == [i \in 1..k |-> s]
\* @type: Seq(Str);
BridgePlan == <<"bridge", "veth", "nat">> \o Times("attach", net_extra) \o <<"address", "up">>
              \o Times("join", net_extra) \o <<"route">>
\* @type: Seq(Str);
EgressPlan == <<"bridge", "veth", "nat">> \o Times("attach", net_extra) \o <<"egress", "proxy", "address", "up">>
              \o Times("join", net_extra) \o <<"route">>
\* @type: Seq(Str);
UserPlan == <<"usernet", "address", "up", "route">>
\* @type: Seq(Str);
UserEgressPlan == <<"proxy", "filter", "usernet", "address", "up", "route">>
\* The longest plan's length: a constant bound for quantifiers over plan positions.
MaxSteps == 8 + 2 * MaxExtra
StepNames == {"bridge", "veth", "nat", "attach", "egress", "proxy", "usernet", "filter", "address", "up",
              "join", "route", "teardown"}
\* The steps that leave something on the host (the others act inside the container's network
\* namespace, which ends with the container).
HostSteps == {"bridge", "veth", "nat", "attach", "egress", "proxy", "usernet"}
\* The steps that put an egress policy in force.
PolicySteps == {"egress", "filter", "proxy"}
Phases == {"idle", "running", "ready", "failed", "releasing", "released", "leaked"}
Settled == {"idle", "ready", "failed", "leaked"}

\* @type: Seq(Str);
Plan ==
    IF net_user THEN (IF net_egress THEN UserEgressPlan ELSE UserPlan)
    ELSE IF ~net_bridged THEN <<>> ELSE IF net_egress THEN EgressPlan ELSE BridgePlan

HasDone(s) == \E i \in 1..MaxSteps : i <= net_done /\ Plan[i] = s
\* How many of the steps done are s.
DoneCount(s) == Cardinality({i \in 1..MaxSteps : i <= net_done /\ Plan[i] = s})
InPlan(s) == \E i \in 1..MaxSteps : i <= Len(Plan) /\ Plan[i] = s

\* The step whose outcome is awaited, or "none".
UnderWay ==
    IF net_phase = "running" THEN Plan[net_done + 1]
    ELSE IF net_phase = "releasing" THEN "teardown"
    ELSE "none"

\* What is held once step s has been tried.
Made(s) == IF s \in HostSteps THEN net_held \cup {s} ELSE net_held

net_vars == <<net_bridged, net_user, net_egress, net_extra, net_phase, net_done, net_held>>
vars == <<net_bridged, net_user, net_egress, net_extra, net_phase, net_done, net_held, event>>

NetInit ==
    /\ net_bridged \in BOOLEAN
    /\ net_user \in BOOLEAN
    /\ net_egress \in BOOLEAN
    /\ ~(net_bridged /\ net_user)
    /\ net_egress => (net_bridged \/ net_user)
    /\ net_extra \in 0..MaxExtra
    /\ net_extra > 0 => net_bridged
    /\ net_phase = "idle"
    /\ net_done = 0
    /\ net_held = {}

PhaseAfter(d) == IF d = Len(Plan) THEN "ready" ELSE "running"

Begin ==
    /\ net_phase = "idle"
    /\ net_phase' = PhaseAfter(0)
    /\ UNCHANGED <<net_bridged, net_user, net_egress, net_extra, net_done, net_held>>

Done(s) ==
    /\ UnderWay = s
    /\ IF s = "teardown"
       THEN net_phase' = "released" /\ net_held' = {} /\ UNCHANGED net_done
       ELSE /\ net_done' = net_done + 1
            /\ net_phase' = PhaseAfter(net_done + 1)
            /\ net_held' = Made(s)
    /\ UNCHANGED <<net_bridged, net_user, net_egress, net_extra>>

\* Step s did not complete (it failed, or the process carrying it out is gone). An unfinished
\* teardown leaves the network leaked; any other step fails the network, and whatever it may
\* have left counts as held.
Unfinished(s) ==
    IF s = "teardown"
    THEN net_phase' = "leaked" /\ UNCHANGED net_held
    ELSE net_phase' = "failed" /\ net_held' = Made(s)

Fail(s) ==
    /\ UnderWay = s
    /\ Unfinished(s)
    /\ UNCHANGED <<net_bridged, net_user, net_egress, net_extra, net_done>>

\* The step under way will never report: the supervisor carrying it out is Lost. Only System
\* takes it, in the lifecycle's Lost step; alone it would be one more way to fail each step,
\* which Fail already is.
Abandon ==
    /\ UnderWay # "none"
    /\ Unfinished(UnderWay)
    /\ UNCHANGED <<net_bridged, net_user, net_egress, net_extra, net_done>>

Release ==
    /\ net_phase \in Settled
    /\ net_phase' = IF net_held = {} THEN "released" ELSE "releasing"
    /\ UNCHANGED <<net_bridged, net_user, net_egress, net_extra, net_done, net_held>>

Ev(name, arg) == event' = [m |-> "net", name |-> name, arg |-> arg]

Init == NetInit /\ event = [m |-> "", name |-> "", arg |-> ""]

Next ==
    \/ Begin /\ Ev("Begin", "")
    \/ \E s \in StepNames : Done(s) /\ Ev("Done", s)
    \/ \E s \in StepNames : Fail(s) /\ Ev("Fail", s)
    \/ Release /\ Ev("Release", "")

Spec == Init /\ [][Next]_vars

(* Invariants: the same names as in the machine. *)
TypeOK ==
    /\ net_bridged \in BOOLEAN
    /\ net_user \in BOOLEAN
    /\ net_egress \in BOOLEAN
    /\ net_extra \in 0..MaxExtra
    /\ net_phase \in Phases
    /\ net_done \in 0..Len(Plan)
    /\ net_held \subseteq HostSteps

\* An egress policy needs a link of the container's own (a bridge's veth or a user-mode stack).
EgressNeedsLink == net_egress => (net_bridged \/ net_user)
OneLink == ~(net_bridged /\ net_user)
\* More attachments only beside a first bridge.
ExtraNeedsBridge == net_extra > 0 => net_bridged
ReadyMeansComplete == net_phase = "ready" => net_done = Len(Plan)
\* A container whose mode has an egress policy never has an interface up unless the policy's
\* rules and proxy are in force (made, and, on the host, not yet torn down).
NoInterfaceUpWithoutPolicy ==
    (net_egress /\ (HasDone("up") \/ HasDone("join")) /\ net_phase # "released") =>
        \A s \in PolicySteps : InPlan(s) => (HasDone(s) /\ (s \in HostSteps => s \in net_held))
\* The container side needs its link (the veth moved into its namespace, or the user-mode
\* stack's interface there), and the route an address; a user-mode stack is attached only once
\* the policy's rules are in force inside.
InsideAfterLink == HasDone("address") => (HasDone("veth") \/ HasDone("usernet"))
\* Each more interface is given its address and brought up only once its veth is in the
\* container's namespace, and after the first interface.
JoinAfterAttach == DoneCount("join") <= DoneCount("attach") /\ (HasDone("join") => HasDone("up"))
StackAfterFilter == (net_egress /\ HasDone("usernet")) => HasDone("filter")
RouteAfterUp == HasDone("route") => (HasDone("up") /\ HasDone("address"))
\* Everything a host-side step made is held until the teardown completes.
NothingMadeIsForgotten == net_phase # "released" => \A s \in HostSteps : HasDone(s) => s \in net_held
\* The teardown removes every rule and link the network made.
ReleasedHoldsNothing == net_phase = "released" => net_held = {}

Inv ==
    /\ TypeOK /\ EgressNeedsLink /\ OneLink /\ ExtraNeedsBridge /\ ReadyMeansComplete
    /\ NoInterfaceUpWithoutPolicy /\ InsideAfterLink /\ JoinAfterAttach /\ StackAfterFilter /\ RouteAfterUp /\ NothingMadeIsForgotten /\ ReleasedHoldsNothing

(* Temporal: steps are never undone, and once released nothing is held again. *)
Monotone == [][net_done' >= net_done]_vars
ReleasedStays == [][net_phase = "released" => net_phase' = "released"]_vars
=============================================================================
