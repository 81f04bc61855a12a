--------------------------------- MODULE Oci ---------------------------------
(***************************************************************************)
(* A container as `nucleus oci` runs it for containerd (runc's command    *)
(* line), mirrored by nucleus/machines/oci.py: the runtime-spec's         *)
(* lifecycle and which operation each of its states allows.               *)
(*                                                                         *)
(* `create` sets the container up (creating); once set up, its init waits *)
(* for `start` (created); `start` runs the user's program (running); the  *)
(* program's end makes the container stopped; `delete` releases what is   *)
(* left (deleted). A failed create leaves nothing (deleted). `kill` is    *)
(* taken while created (the waiting init is told it will never start) or  *)
(* running (the signal is sent); `exec` only while running; `delete` from *)
(* stopped, and from created, or running with --force, it first kills the *)
(* container (the status changes when its exit is seen).                  *)
(***************************************************************************)

VARIABLES
    \* @type: Str;
    oci_status,
    \* @type: { m: Str, name: Str, arg: Str };
    event

Statuses == {"none", "creating", "created", "running", "stopped", "deleted"}
\* A process of the container exists.
Live == {"created", "running"}
\* The signals the spec offers `kill` (their numbers, as runc's callers pass them).
Signals == {"15", "9"}
\* `delete`'s argument: "force" with --force.
Forces == {"", "force"}

vars == <<oci_status, event>>

OciInit == oci_status = "none"

Create ==
    /\ oci_status = "none"
    /\ oci_status' = "creating"

Created ==
    /\ oci_status = "creating"
    /\ oci_status' = "created"

CreateFailed ==
    /\ oci_status = "creating"
    /\ oci_status' = "deleted"

Start ==
    /\ oci_status = "created"
    /\ oci_status' = "running"

\* The waiting init is told it will never start, or the running process is signalled.
Kill(sig) ==
    /\ oci_status \in Live
    /\ UNCHANGED oci_status

Exec ==
    /\ oci_status = "running"
    /\ UNCHANGED oci_status

Exited ==
    /\ oci_status \in Live
    /\ oci_status' = "stopped"

\* From stopped the state is released; from created, or running with --force,
\* the container is killed first and is deleted once its exit is seen.
Delete(f) ==
    \/ /\ oci_status = "stopped"
       /\ oci_status' = "deleted"
    \/ /\ \/ oci_status = "created"
          \/ oci_status = "running" /\ f = "force"
       /\ UNCHANGED oci_status

Ev(name, arg) == event' = [m |-> "oci", name |-> name, arg |-> arg]

Init == OciInit /\ event = [m |-> "", name |-> "", arg |-> ""]

Next ==
    \/ Create /\ Ev("Create", "")
    \/ Created /\ Ev("Created", "")
    \/ CreateFailed /\ Ev("CreateFailed", "")
    \/ Start /\ Ev("Start", "")
    \/ \E sig \in Signals : Kill(sig) /\ Ev("Kill", sig)
    \/ Exec /\ Ev("Exec", "")
    \/ Exited /\ Ev("Exited", "")
    \/ \E f \in Forces : Delete(f) /\ Ev("Delete", f)

Spec == Init /\ [][Next]_vars

(* Invariants: the same names as in the machine. *)
TypeOK == oci_status \in Statuses

Inv == TypeOK

(* Temporal: a deleted container stays deleted; a container runs at most once  *)
(* (start never returns it to created); one that stopped never runs again.     *)
NeverBackFromDeleted == [][oci_status = "deleted" => oci_status' = "deleted"]_vars
StartsOnce == [][oci_status' = "created" => oci_status \in {"creating", "created"}]_vars
NeverRunsAgain == [][oci_status = "stopped" => oci_status' \in {"stopped", "deleted"}]_vars
=============================================================================
