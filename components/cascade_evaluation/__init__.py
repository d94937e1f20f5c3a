"""cascade_evaluation: the shipped model as an on-device sentry, a teacher as a server-side judge that confirms
or rejects each detection; FRR and FA/h of both, alone and together, over a grid of their cutoffs."""
