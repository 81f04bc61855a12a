-------------------------------- MODULE Join --------------------------------
(***************************************************************************)
(* A command joining a running container (`nucleus attach`), mirrored by  *)
(* nucleus/machines/join.py. A plan of steps carried out in order by a    *)
(* process the machine spawns: spawn it, move it into the container's     *)
(* cgroup, enter the container's namespaces, take the container's         *)
(* identity, fork into its PID namespace, then drop capabilities, load    *)
(* the container's seccomp program and apply its Landlock rules. Only     *)
(* then is the command started. A failure is fatal, except for a control  *)
(* the container itself runs without (join_degradable: its security was  *)
(* degraded there): a joined command never has fewer restrictions than    *)
(* the container's workload, and never more leniency either.              *)
(***************************************************************************)
EXTENDS Naturals, Sequences

VARIABLES
    \* @type: Set(Str);
    join_degradable,
    \* @type: Str;
    join_phase,
    \* @type: Int;
    join_done,
    \* @type: Set(Str);
    join_degraded,
    \* @type: { m: Str, name: Str, arg: Str };
    event

\* @type: Seq(Str);
Plan == <<"spawn", "cgroup", "enter", "identity", "fork", "caps", "seccomp", "landlock">>
\* The plan's length: a constant bound for quantifiers over plan positions.
MaxSteps == 8
StepNames == {"spawn", "cgroup", "enter", "identity", "fork", "caps", "seccomp", "landlock"}
Degradable == {"seccomp", "landlock"}
Phases == {"idle", "running", "ready", "started", "exited", "failed"}

HasDone(s) == \E i \in 1..MaxSteps : i <= join_done /\ Plan[i] = s

join_vars == <<join_degradable, join_phase, join_done, join_degraded>>
vars == <<join_degradable, join_phase, join_done, join_degraded, event>>

\* join_degradable: the controls the container itself runs without (its security level was
\* degraded there); any subset of the degradable ones.
JoinInit ==
    /\ join_degradable \in SUBSET Degradable
    /\ join_phase = "idle"
    /\ join_done = 0
    /\ join_degraded = {}

\* The phase after `d` steps are done: every restriction in force, or the next step under way.
PhaseAfter(d) == IF d = Len(Plan) THEN "ready" ELSE "running"

Begin ==
    /\ join_phase = "idle"
    /\ join_phase' = PhaseAfter(join_done)
    /\ UNCHANGED <<join_degradable, join_done, join_degraded>>

Done(s) ==
    /\ join_phase = "running"
    /\ Plan[join_done + 1] = s
    /\ join_done' = join_done + 1
    /\ join_phase' = PhaseAfter(join_done + 1)
    /\ UNCHANGED <<join_degradable, join_degraded>>

\* A control the container runs without is skipped, and recorded; any other failure is fatal.
Fail(s) ==
    /\ join_phase = "running"
    /\ Plan[join_done + 1] = s
    /\ IF s \in join_degradable
       THEN /\ join_done' = join_done + 1
            /\ join_degraded' = join_degraded \union {s}
            /\ join_phase' = PhaseAfter(join_done + 1)
       ELSE /\ join_phase' = "failed"
            /\ UNCHANGED <<join_done, join_degraded>>
    /\ UNCHANGED join_degradable

\* Every restriction is in force: exec the command.
Start ==
    /\ join_phase = "ready"
    /\ join_phase' = "started"
    /\ UNCHANGED <<join_degradable, join_done, join_degraded>>

\* The command exited (its exit status is not part of the abstraction).
Exit ==
    /\ join_phase = "started"
    /\ join_phase' = "exited"
    /\ UNCHANGED <<join_degradable, join_done, join_degraded>>

Ev(name, arg) == event' = [m |-> "join", name |-> name, arg |-> arg]

Init == JoinInit /\ event = [m |-> "", name |-> "", arg |-> ""]

Next ==
    \/ Begin /\ Ev("Begin", "")
    \/ \E s \in StepNames : Done(s) /\ Ev("Done", s)
    \/ \E s \in StepNames : Fail(s) /\ Ev("Fail", s)
    \/ Start /\ Ev("Start", "")
    \/ Exit /\ Ev("Exit", "")

Spec == Init /\ [][Next]_vars

(* Invariants: the same names as in the machine. *)
TypeOK ==
    /\ join_degradable \subseteq Degradable
    /\ join_phase \in Phases
    /\ join_done \in 0..Len(Plan)
    /\ join_degraded \subseteq Degradable

StartedOnlyRestricted == join_phase \in {"ready", "started", "exited"} => join_done = Len(Plan)
NoWeakerThanContainer == join_degraded \subseteq join_degradable
DegradedOnlyWhenReached == \A s \in join_degraded : HasDone(s)
FailedNeverComplete == join_phase = "failed" => join_done < Len(Plan)

Inv ==
    /\ TypeOK /\ StartedOnlyRestricted /\ NoWeakerThanContainer /\ DegradedOnlyWhenReached
    /\ FailedNeverComplete

(* Temporal: steps are never undone, and a control once skipped stays skipped. *)
Monotone == [][join_done' >= join_done /\ join_degraded \subseteq join_degraded']_vars
=============================================================================
