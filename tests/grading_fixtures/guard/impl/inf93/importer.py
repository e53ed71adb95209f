def imports_csv():
    import csv
    return csv.reader
