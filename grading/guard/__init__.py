"""The grader's anti-cheat package (not in lab/, which students read):

- bans.py     what may be banned: targets, the shared "@name" lists, BannedError;
- scan.py     the one syntax-tree scanner: the bans' static check at collection, the submission audit;
- runtime.py  the run-time check: a meta-path finder for banned modules, wrappers on banned callables;
              nothing on an import or a call imports, reads files or builds paths, so it cannot re-enter;
- plugin.py   the pytest plugin (registered by the root conftest): topic.toml's bans per test, the seal;
- seal.py     the timing seal: the clocks and lab.timing may not change while a test runs.
"""
