-- tvdb 0.1.0 -> 0.2.0, assembled from extension/upgrade/0.1.0--0.2.0/ in
-- name order. test/upgrade checks that the result equals a fresh install.
\echo Use "ALTER EXTENSION tvdb UPDATE TO '0.2.0'" to load this file. \quit
