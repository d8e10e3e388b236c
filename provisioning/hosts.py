"""Services and operation handlers for managed hosts: enrol, trust a host key, provision,
health. (Filled in by the managed-hosts work; signatures are the contract the API and UI use.)"""
