"""Staff search across tenants: one box, for support staff and platform admins, that finds
instances by name, hostname, tenant, SEN or host, and tenants and hosts by name.

The package has the app's shape in small: ``selectors`` (the read), ``views`` and ``urls``
(the results page), ``api`` and ``api_urls`` (the same search in the REST API).
"""
