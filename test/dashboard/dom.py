"""dom.py FILE EXPR — evaluate EXPR over the DOM Chromium dumped (FILE) and
print the result: test/dashboard/run.sh's way of reading what the page shows.
EXPR sees `d`, a Dom with a few queries; text is whitespace-collapsed."""
import html.parser
import sys


class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent, self.children = tag, dict(attrs), parent, []

    def text(self):
        parts = [c if isinstance(c, str) else c.text() for c in self.children]
        return " ".join(" ".join(parts).split())

    def walk(self):
        for c in self.children:
            if isinstance(c, Node):
                yield c
                yield from c.walk()

    def __getitem__(self, key):
        return self.attrs.get(key)


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Parser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        n = Node(tag, attrs, self.cur)
        self.cur.children.append(n)
        if tag not in VOID:
            self.cur = n

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, attrs, self.cur))

    def handle_endtag(self, tag):
        n = self.cur
        while n is not self.root and n.tag != tag:
            n = n.parent
        if n is not self.root:
            self.cur = n.parent

    def handle_data(self, data):
        if self.cur.tag not in ("script", "style"):
            self.cur.children.append(data)


class Dom:
    def __init__(self, root):
        self.root = root
        self.nodes = list(root.walk())

    def by_id(self, id_):
        for n in self.nodes:
            if n["id"] == id_:
                return n
        raise SystemExit(f"no element with id {id_!r}")

    def text(self, id_):
        return self.by_id(id_).text()

    def text_of(self, id_):
        return self.by_id(id_).text()

    def attr(self, tag, name):
        return next((n[name] for n in self.nodes if n.tag == tag), None)

    def all(self, tag, attr):
        return [n for n in self.nodes if n.tag == tag and attr in n.attrs]

    def attr_count(self, tag):
        return str(sum(1 for n in self.nodes if n.tag == tag))

    def count(self, tag, parent_attr=None, parent_id=None):
        def inside(n):
            p = n.parent
            while p is not None:
                if (parent_attr and parent_attr in p.attrs) or (parent_id and p["id"] == parent_id):
                    return True
                p = p.parent
            return False
        return str(sum(1 for n in self.nodes if n.tag == tag and inside(n)))

    def rows(self, table_id, attr, value=None):
        """The cell texts of each row of a table that has attr (= value)."""
        table = self.by_id(table_id)
        return [[c.text() for c in r.children if isinstance(c, Node) and c.tag == "td"]
                for r in table.walk() if r.tag == "tr" and attr in r.attrs
                and (value is None or r[attr] == value)]

    def row_text(self, table_id, attr, value):
        rows = self.rows(table_id, attr, value)
        return " ".join(c for c in rows[0] if c) if rows else ""

    def link_to(self, href):
        return next((n.text() for n in self.nodes if n.tag == "a" and n["href"] == href), "")


def main():
    p = Parser()
    with open(sys.argv[1], encoding="utf-8") as f:
        p.feed(f.read())
    print(eval(sys.argv[2], {"d": Dom(p.root)}))


if __name__ == "__main__":
    main()
