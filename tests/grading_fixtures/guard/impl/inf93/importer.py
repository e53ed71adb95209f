def imports_csv():
    import csv
    return csv.reader


def imports_sched():
    import sched          # not loaded before: the meta-path finder is asked, and refuses it
    return sched.scheduler
