"""An import-linter contract type: other packages reach a package only through its public modules.

[importlinter:contract:...]
type = public
package = nattillsyn.alerting
public_modules = nattillsyn.alerting.service   (the package itself is always public)
exempt_importers = nattillsyn.app             (the composition root wires internals together)
"""

from __future__ import annotations

from importlinter import Contract, ContractCheck, fields, output


def _within(module: str, packages: list[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


class PublicModulesContract(Contract):
    type_name = "public"

    package = fields.StringField()
    public_modules = fields.ListField(subfield=fields.StringField())
    exempt_importers = fields.ListField(subfield=fields.StringField(), required=False)

    def check(self, graph, verbose: bool) -> ContractCheck:
        package = str(self.package)
        public = {package, *map(str, self.public_modules)}
        exempt = [str(m) for m in (self.exempt_importers or [])]
        broken = []
        for imported in sorted(graph.find_descendants(package) | {package}):
            for importer in sorted(graph.find_modules_that_directly_import(imported)):
                if _within(importer, [package, *exempt]) or imported in public:
                    continue
                lines = [
                    d["line_number"]
                    for d in graph.get_import_details(importer=importer, imported=imported)
                ]
                broken.append((importer, imported, lines))
        unknown = sorted(m for m in public if m not in graph.modules)
        return ContractCheck(
            kept=not broken and not unknown, metadata={"broken": broken, "unknown": unknown}
        )

    def render_broken_contract(self, check: ContractCheck) -> None:
        for importer, imported, lines in check.metadata["broken"]:
            where = ", ".join(f"l.{n}" for n in lines)
            output.print_error(f"{importer} -> {imported} ({where}): not a public module")
            output.new_line()
        for module in check.metadata["unknown"]:
            output.print_error(f"declared public module {module} does not exist")
            output.new_line()
