---- MODULE Kitchen ----
\* A sample of the TLA+ the built-in checker evaluates beyond what formal/ uses:
\* tests/model/test_tla_checker_semantics.py expects the states TLC finds in it.
EXTENDS Integers, Sequences, FiniteSets, TLC
CONSTANTS Procs, Limit
VARIABLES queue, owner, seen, score

vars == <<queue, owner, seen, score>>
Cnt == INSTANCE Count WITH total <- score, Max <- Limit

Init ==
    /\ queue = <<>>
    /\ owner \in [Procs -> BOOLEAN]
    /\ seen = {}
    /\ score = 0

Push(p) ==
    /\ Len(queue) < 2
    /\ queue' = Append(queue, p)
    /\ seen' = seen \cup {p}
    /\ UNCHANGED <<owner, score>>

Pop ==
    /\ queue # <<>>
    /\ LET p == Head(queue)
       IN /\ owner' = [owner EXCEPT ![p] = ~@]
          /\ queue' = Tail(queue)
    /\ score' = (score + 1) % Limit
    /\ UNCHANGED seen

Shuffle ==
    /\ Len(queue) = 2
    /\ queue' = SubSeq(queue \o queue, 2, 3)
    /\ UNCHANGED <<owner, seen, score>>

Reset ==
    /\ Cardinality(seen) = Cardinality(Procs)
    /\ \E S \in SUBSET Procs : S # {} /\ seen' = seen \ S
    /\ UNCHANGED <<queue, owner, score>>

Bump ==
    /\ Cnt!Tick
    /\ CASE score = 0 -> UNCHANGED owner
         [] OTHER -> owner' = [q \in Procs |-> TRUE]
    /\ UNCHANGED <<queue, seen>>

Next == (\E p \in Procs : Push(p)) \/ Pop \/ Shuffle \/ Reset \/ Bump

TypeOK ==
    /\ queue \in Seq(Procs)
    /\ owner \in [Procs -> BOOLEAN]
    /\ seen \subseteq Procs
    /\ score \in 0..(Limit - 1)

Facts ==
    /\ (CHOOSE x \in {1, 2, 3} : x > 1) = 2
    /\ {q \in Procs : owner[q]} \subseteq Procs
    /\ {<<q, owner[q]>> : q \in Procs} \subseteq Procs \X BOOLEAN
    /\ [a |-> 1, b |-> 2].b = 2
    /\ [x \in {1} |-> 2] = (1 :> 2)
    /\ (1 :> 2) @@ (3 :> 4) @@ (1 :> 5) = [x \in {1, 3} |-> x + 1]
    /\ -7 \div 2 = -3 /\ (-7) \div 2 = -4 /\ -7 % 2 = 1 /\ 2^3 = 8
    /\ UNION {{1}, {2}} = {1, 2}
    /\ [a : {1}, b : {2, 3}] = {[a |-> 1, b |-> 2], [a |-> 1, b |-> 3]}
    /\ ToString(<<1, "a">>) = "<<1, \"a\">>"
    /\ Cardinality([{1, 2} -> {3, 4, 5}]) = 9
    /\ <<1, 2>> = [i \in 1..2 |-> i]
    /\ DOMAIN [a |-> 1] = {"a"}
    /\ \A <<u, v>> \in {<<1, 2>>} : u < v
    /\ LET sq(n) == n * n IN sq(3) = 9

Inv == TypeOK /\ Len(queue) <= 2 /\ Facts

ScoreMoves == [][score' # score => (Cnt!Tick \/ Pop)]_vars
Spec == Init /\ [][Next]_vars /\ WF_vars(Next)
====
