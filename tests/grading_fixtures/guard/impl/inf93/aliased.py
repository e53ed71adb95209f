from json import dumps as my_dumps      # an alias taken when the module is imported  # noqa: F401
