---- MODULE Count ----
\* Instantiated by Kitchen.tla, its variable and constant substituted.
EXTENDS Naturals
CONSTANT Max
VARIABLE total
Tick == total < Max - 1 /\ total' = total + 1
====
