------------------------------ MODULE Security ------------------------------
(***************************************************************************)
(* Security controls, mirrored by nucleus/machines/security.py.           *)
(* Capabilities dropped -> seccomp loaded -> Landlock applied; each is    *)
(* irreversible. A capability failure is always fatal; a seccomp or       *)
(* Landlock failure is fatal unless degraded security is allowed; in the *)
(* strict modes (strict-agent, production) nothing is ever degraded.      *)
(* Seccomp trace mode (sec_trace: agent mode only) loads a filter that    *)
(* allows every call and reports it: the control is in place but refuses  *)
(* nothing, so the level it leads to is "traced", never "enforced".       *)
(***************************************************************************)
EXTENDS Naturals

VARIABLES
    \* @type: Bool;
    sec_allowDegraded,
    \* @type: Bool;
    sec_strict,
    \* @type: Bool;
    sec_trace,
    \* @type: Str;
    sec_phase,
    \* @type: Set(Str);
    sec_applied,
    \* @type: Set(Str);
    sec_degraded,
    \* @type: { m: Str, name: Str, arg: Str };
    event

Controls == {"caps", "seccomp", "landlock"}
Degradable == {"seccomp", "landlock"}
Phases == {"idle", "caps", "seccomp", "landlock", "locked", "failed"}
NextPhase(c) == CASE c = "caps" -> "seccomp" [] c = "seccomp" -> "landlock" [] OTHER -> "locked"

sec_vars == <<sec_allowDegraded, sec_strict, sec_trace, sec_phase, sec_applied, sec_degraded>>
vars == <<sec_allowDegraded, sec_strict, sec_trace, sec_phase, sec_applied, sec_degraded, event>>

\* Both flags range freely: validation never lets a strict mode allow degraded security, and
\* the machine must fail closed even if it did. Trace mode is a choice of the filter loaded, not
\* a fallback: a strict mode never asks for it (validation refuses it, and the plan never maps it).
SecInit ==
    /\ sec_allowDegraded \in BOOLEAN
    /\ sec_strict \in BOOLEAN
    /\ sec_trace \in BOOLEAN
    /\ ~(sec_strict /\ sec_trace)
    /\ sec_phase = "idle"
    /\ sec_applied = {}
    /\ sec_degraded = {}

Begin ==
    /\ sec_phase = "idle"
    /\ sec_phase' = "caps"
    /\ UNCHANGED <<sec_allowDegraded, sec_strict, sec_trace, sec_applied, sec_degraded>>

Done(c) ==
    /\ sec_phase = c
    /\ c \in Controls
    /\ sec_applied' = sec_applied \union {c}
    /\ sec_phase' = NextPhase(c)
    /\ UNCHANGED <<sec_allowDegraded, sec_strict, sec_trace, sec_degraded>>

Fail(c) ==
    /\ sec_phase = c
    /\ c \in Controls
    /\ IF c \in Degradable /\ sec_allowDegraded /\ ~sec_strict
       THEN /\ sec_degraded' = sec_degraded \union {c}
            /\ sec_phase' = NextPhase(c)
       ELSE /\ sec_phase' = "failed"
            /\ UNCHANGED sec_degraded
    /\ UNCHANGED <<sec_allowDegraded, sec_strict, sec_trace, sec_applied>>

Ev(name, arg) == event' = [m |-> "sec", name |-> name, arg |-> arg]

Init == SecInit /\ event = [m |-> "", name |-> "", arg |-> ""]

Next ==
    \/ Begin /\ Ev("Begin", "")
    \/ \E c \in Controls : Done(c) /\ Ev("Done", c)
    \/ \E c \in Controls : Fail(c) /\ Ev("Fail", c)

Spec == Init /\ [][Next]_vars

\* What the container runs with: a control missing first, then a filter that refuses nothing.
Level == IF sec_degraded # {} THEN "degraded" ELSE IF sec_trace THEN "traced" ELSE "enforced"

(* Invariants: the same names as in the machine. *)
TypeOK ==
    /\ sec_allowDegraded \in BOOLEAN
    /\ sec_strict \in BOOLEAN
    /\ sec_trace \in BOOLEAN
    /\ sec_phase \in Phases
    /\ sec_applied \subseteq Controls
    /\ sec_degraded \subseteq Degradable

InOrder ==
    /\ "seccomp" \in (sec_applied \union sec_degraded) => "caps" \in sec_applied
    /\ "landlock" \in (sec_applied \union sec_degraded) => "seccomp" \in (sec_applied \union sec_degraded)
DegradedOnlyIfAllowed == sec_degraded # {} => sec_allowDegraded
StrictNeverDegraded == sec_strict => sec_degraded = {}
StrictNeverTraced == sec_strict => ~sec_trace
LockedMeansAllControls ==
    sec_phase = "locked" => (sec_applied \union sec_degraded = Controls /\ "caps" \in sec_applied)
NeverBoth == sec_applied \intersect sec_degraded = {}

Inv ==
    /\ TypeOK /\ InOrder /\ DegradedOnlyIfAllowed /\ StrictNeverDegraded /\ LockedMeansAllControls
    /\ NeverBoth /\ StrictNeverTraced

(* Temporal: a control once applied is never lifted. *)
Irreversible == [][sec_applied \subseteq sec_applied' /\ sec_degraded \subseteq sec_degraded']_vars
=============================================================================
