"""The lab: topologies of throwaway namespaces, listeners, probes, the differential harness and audits."""
