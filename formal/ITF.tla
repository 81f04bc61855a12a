-------------------------------- MODULE ITF --------------------------------
(***************************************************************************)
(* Pure-TLA+ conversion of TLC values / traces to the Informal Trace       *)
(* Format (ITF, Apalache ADR-015), serialized with TLC's built-in          *)
(* Json!JsonSerialize (tla2tools >= 2025; no CommunityModules needed).     *)
(*                                                                         *)
(*   TLA+ value            ITF / JSON                                      *)
(*   BOOLEAN               true / false                                    *)
(*   string                "..."                                           *)
(*   integer               {"#bigint": "-12"}   (ADR-015: no JSON numbers) *)
(*   sequence/tuple        [ ... ]   (also any function with domain 1..n)  *)
(*   record                { "field": ... }  (string-domain functions too) *)
(*   other function        {"#map": [[k, v], ...]}                         *)
(*   finite set            {"#set": [ ... ]}                               *)
(*   model value           "name"  (plain string)                          *)
(*   Nat/Int/Real/STRING   {"#unserializable": "Nat"}                      *)
(*                                                                         *)
(* Type dispatch is done on TLC's ToString representation, since TLC       *)
(* refuses cross-type comparisons such as  1 \in STRING.                   *)
(* Element order inside #set/#map arrays is TLC's set order (irrelevant).  *)
(***************************************************************************)
LOCAL INSTANCE Naturals
LOCAL INSTANCE Sequences
LOCAL INSTANCE FiniteSets
LOCAL INSTANCE TLC
LOCAL INSTANCE TLCExt
LOCAL INSTANCE Json

LOCAL IntChars == {"0","1","2","3","4","5","6","7","8","9","-"}
LOCAL HasDot(s) == \E i \in 1..Len(s) : SubSeq(s, i, i) = "."

RECURSIVE ITFValue(_)
ITFValue(v) ==
  LET s == ToString(v)
      c == SubSeq(s, 1, 1)
  IN CASE s = "TRUE" \/ s = "FALSE"    -> v
       [] c = "\""                     -> v
       [] c \in IntChars /\ ~HasDot(s) -> "#bigint" :> s
       [] c \in IntChars               -> "#set" :> {ITFValue(e) : e \in v}  \* a..b
       [] c = "<"                      -> [i \in 1..Len(v) |-> ITFValue(v[i])]
       [] c = "["                      -> [k \in DOMAIN v |-> ITFValue(v[k])]
       [] c = "("                      -> "#map" :> {<<ITFValue(k), ITFValue(v[k])>> : k \in DOMAIN v}
       [] c = "{"                      -> "#set" :> {ITFValue(e) : e \in v}
       [] s \in {"Nat", "Int", "Real", "STRING"} -> "#unserializable" :> s
       [] OTHER                        -> s   \* model value

(***************************************************************************)
(* A TLCExt!Trace (a sequence of records, in simulation mode with an      *)
(* extra "_action" field) as an ITF trace object.  The action name (and  *)
(* the action's parameters, e.g.  \E p \in Procs : Inc(p)) go into each  *)
(* state's "#meta".                                                        *)
(***************************************************************************)
ITFTrace(T, meta) ==
  LET Vars(i)  == DOMAIN T[i] \ {"_action"}
      Act(i)   == T[i]["_action"]
      Meta(i)  == IF "_action" \notin DOMAIN T[i] THEN [index |-> i - 1]
                  ELSE IF "context" \in DOMAIN Act(i)
                  THEN [index |-> i - 1, action |-> Act(i).name,
                        params |-> ITFValue(Act(i).context)]
                  ELSE [index |-> i - 1, action |-> Act(i).name]
      State(i) == ("#meta" :> Meta(i)) @@ [k \in Vars(i) |-> ITFValue(T[i][k])]
  IN   ("#meta"  :> meta)
    @@ ("vars"   :> Vars(1))
    @@ ("states" :> [i \in 1..Len(T) |-> State(i)])

ITFDefaultMeta(source) ==
  [format |-> "ITF",
   source |-> source,
   description |-> "Created by TLC " \o TLCGet("revision").calver \o " rev " \o TLCGet("revision").tag]

(***************************************************************************)
(* Write the current behaviour (TLCExt!Trace) as ITF JSON to file  path.  *)
(* Always TRUE.  In -simulate mode use it as  CONSTRAINT TLCDefer(...)    *)
(* (see the formal/*Export.tla wrappers): as an INVARIANT it is also      *)
(* evaluated on unchosen candidate successors, so the last state written *)
(* is the last candidate TLC generated, not the randomly chosen one.     *)
(***************************************************************************)
ITFWriteTrace(path, meta) == JsonSerialize(path, ITFTrace(Trace, meta))

(***************************************************************************)
(* Simulation helpers: one file per behaviour.                             *)
(*   worker id  = TLCGet("stats").worker                                   *)
(*   trace no.  = TLCGet("diameter")  (per-worker, 1-based, in -simulate) *)
(***************************************************************************)
ITFTraceFileName(dir) ==
  dir \o "/trace_w" \o ToString(TLCGet("stats").worker)
      \o "_" \o ToString(TLCGet("diameter")) \o ".itf.json"

=============================================================================
