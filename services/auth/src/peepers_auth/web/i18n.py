"""Words, money and dates in the seller's language (pt-BR by default, English available).

Texts are keyed by their English wording; a missing Portuguese entry shows the English
text (a test keeps the table complete for every key the templates use). Money follows
the currency (symbol and decimals); dates are shown in the seller's site time zone.
A table this small does not need Babel or gettext catalogs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final
from zoneinfo import ZoneInfo

from peepers_auth.web.settings import Language

LANGUAGES: Final[tuple[Language, ...]] = ("pt-BR", "en")

# ML's sites: their time zone and currency (FACTS.md, the sites table).
SITE_ZONES: Final = {
    "MLA": "America/Argentina/Buenos_Aires",
    "MLB": "America/Sao_Paulo",
    "MCO": "America/Bogota",
    "MCR": "America/Costa_Rica",
    "MEC": "America/Guayaquil",
    "MLC": "America/Santiago",
    "MLM": "America/Mexico_City",
    "MLU": "America/Montevideo",
    "MLV": "America/Caracas",
    "MPA": "America/Panama",
    "MPE": "America/Lima",
    "MPT": "Europe/Lisbon",
    "MRD": "America/Santo_Domingo",
}
SITE_CURRENCIES: Final = {
    "MLA": "ARS",
    "MLB": "BRL",
    "MCO": "COP",
    "MCR": "CRC",
    "MEC": "USD",
    "MLC": "CLP",
    "MLM": "MXN",
    "MLU": "UYU",
    "MLV": "VES",
    "MPA": "USD",
    "MPE": "PEN",
    "MPT": "EUR",
    "MRD": "DOP",
}
# Symbol and decimals per currency; CLP and COP are shown without cents, as ML does.
_CURRENCIES: Final = {
    "ARS": ("$", 2),
    "BRL": ("R$", 2),
    "CLP": ("$", 0),
    "COP": ("$", 0),
    "CRC": ("₡", 2),
    "DOP": ("RD$", 2),
    "EUR": ("€", 2),
    "MXN": ("$", 2),
    "PEN": ("S/", 2),
    "USD": ("US$", 2),
    "UYU": ("$U", 2),
    "VES": ("Bs.", 2),
}
# (thousands separator, decimal separator)
_SEPARATORS: Final[dict[Language, tuple[str, str]]] = {"pt-BR": (".", ","), "en": (",", ".")}

PT_BR: Final = {
    "Overview": "Visão geral",
    "Orders": "Vendas",
    "Questions": "Perguntas",
    "Question": "Pergunta",
    "Tickets": "Atendimento",
    "Catalog": "Anúncios",
    "Log out": "Sair",
    "Connection": "Conexão",
    "Connected": "Conectada",
    "Needs re-authorisation": "Precisa autorizar de novo",
    "Disconnected": "Desconectada",
    "Log in again": "Entrar de novo",
    "Sales today": "Vendas hoje",
    "Sales this week": "Vendas nesta semana",
    "orders": "pedidos",
    "Orders and revenue, last 30 days": "Pedidos e faturamento, últimos 30 dias",
    "Unanswered questions": "Perguntas sem resposta",
    "Open tickets": "Chamados abertos",
    "nearest due": "vence primeiro",
    "Sync state": "Sincronização",
    "up to date": "em dia",
    "catching up": "sincronizando",
    "Service not available": "Serviço indisponível",
    "This part of the page is not available right now; the rest works.": (
        "Esta parte da página não está disponível agora; o resto funciona."
    ),
    "Status": "Situação",
    "Buyer": "Comprador",
    "From": "De",
    "To": "Até",
    "Filter": "Filtrar",
    "All": "Todos",
    "Order": "Pedido",
    "Date": "Data",
    "Total": "Total",
    "Next page": "Próxima página",
    "First page": "Primeira página",
    "No orders match.": "Nenhum pedido encontrado.",
    "Timeline": "Linha do tempo",
    "Messages": "Mensagens",
    "Claim": "Reclamação",
    "Items": "Itens",
    "Back to orders": "Voltar para vendas",
    "Oldest first": "Mais antigas primeiro",
    "No unanswered questions.": "Nenhuma pergunta sem resposta.",
    "Item": "Anúncio",
    "Your answer": "Sua resposta",
    "Answer": "Responder",
    "characters left": "caracteres restantes",
    "Answered": "Respondida",
    "Due": "Prazo",
    "Assignee": "Responsável",
    "Notes": "Notas",
    "Add a note": "Adicionar nota",
    "Save": "Salvar",
    "No open tickets.": "Nenhum chamado aberto.",
    "Ticket": "Chamado",
    "Back to tickets": "Voltar para atendimento",
    "open": "aberto",
    "in_progress": "em andamento",
    "waiting_buyer": "aguardando comprador",
    "resolved": "resolvido",
    "closed": "fechado",
    "Search": "Buscar",
    "Category": "Categoria",
    "Price": "Preço",
    "min": "mín.",
    "max": "máx.",
    "Stock": "Estoque",
    "Sold": "Vendidos",
    "items": "anúncios",
    "No items match.": "Nenhum anúncio encontrado.",
    "Updated": "Atualizado",
    "Not found": "Não encontrado",
    "There is nothing here, or it belongs to another account.": (
        "Não há nada aqui, ou pertence a outra conta."
    ),
    "Please log in": "Entre para continuar",
    "Log in with Mercado Livre to see this page.": (
        "Entre com o Mercado Livre para ver esta página."
    ),
    "Log in with Mercado Livre": "Entrar com o Mercado Livre",
    "This form has expired": "Este formulário expirou",
    "Reload the page and try again.": "Recarregue a página e tente de novo.",
    "Something went wrong": "Algo deu errado",
    "Live updates": "Atualizações ao vivo",
    "Seller": "Vendedor",
    "Language": "Idioma",
    "paid": "pago",
    "created": "criado",
    "shipped": "enviado",
    "delivered": "entregue",
    "cancelled": "cancelado",
    "refunded": "reembolsado",
    "partially_refunded": "reembolso parcial",
    "not_delivered": "não entregue",
    "active": "ativo",
    "paused": "pausado",
    "under_review": "em revisão",
    "inactive": "inativo",
    "Revenue": "Faturamento",
    "Write an answer first.": "Escreva uma resposta primeiro.",
    "At most {limit} characters ({count} now).": "No máximo {limit} caracteres ({count} agora).",
    "Conversations": "Conversas",
    "Unread messages": "Mensagens não lidas",
    "This conversation is blocked: Mercado Livre takes no message into it.": (
        "Esta conversa está bloqueada: o Mercado Livre não aceita mensagens nela."
    ),
    "Conversation": "Conversa",
    "Latest first": "Mais recentes primeiro",
    "No conversations yet.": "Nenhuma conversa ainda.",
    "Pack": "Pacote",
    "Unread": "Não lidas",
    "Last message": "Última mensagem",
    "Back to conversations": "Voltar para conversas",
    "You": "Você",
    "No messages yet.": "Nenhuma mensagem ainda.",
    "Your message": "Sua mensagem",
    "Send": "Enviar",
    "Sent": "Enviada",
    "Write a message first.": "Escreva uma mensagem primeiro.",
    "blocked": "bloqueada",
    "order": "pedido",
    "message": "mensagem",
    "claim": "reclamação",
}
_TABLES: Final[dict[Language, dict[str, str]]] = {"pt-BR": PT_BR, "en": {}}


def parse_language(raw: str | None, default: Language) -> Language:
    for language in LANGUAGES:
        if raw == language:
            return language
    return default


@dataclass(frozen=True)
class Locale:
    """One request's language and the seller's site: how words, money and dates look."""

    language: Language
    site_id: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(SITE_ZONES.get(self.site_id, "UTC"))

    @property
    def currency(self) -> str:
        return SITE_CURRENCIES.get(self.site_id, "USD")

    def text(self, english: str) -> str:
        return _TABLES[self.language].get(english, english)

    def number(self, value: Decimal | int, decimals: int = 0) -> str:
        group, point = _SEPARATORS[self.language]
        quantum = Decimal(1).scaleb(-decimals)
        rounded = Decimal(value).quantize(quantum, rounding=ROUND_HALF_EVEN)
        sign = "-" if rounded < 0 else ""
        whole, _, fraction = f"{abs(rounded):f}".partition(".")
        grouped = f"{int(whole):,}".replace(",", group)
        return f"{sign}{grouped}{point}{fraction}" if fraction else f"{sign}{grouped}"

    def money(self, amount: Decimal | int | str, currency: str | None = None) -> str:
        code = currency or self.currency
        symbol, decimals = _CURRENCIES.get(code, (code, 2))
        return f"{symbol} {self.number(Decimal(amount), decimals)}"

    def when(self, moment: datetime | None) -> str:
        if moment is None:
            return "—"
        local = moment.astimezone(self.zone)
        if self.language == "en":
            return local.strftime("%Y-%m-%d %H:%M")
        return local.strftime("%d/%m/%Y %H:%M")

    def filters(self) -> dict[str, Callable[..., str]]:
        """The template filters and globals that need this locale."""
        return {"_": self.text, "money": self.money, "when": self.when, "number": self.number}
