/* lib/tracking/search_sql.c — parsed filter clauses and order_by keys as
 * SQL with bound values (never spliced into the text).
 *
 * LIKE goes through trk_like() (store.c), case-sensitive as MLflow's
 * LIKE is, and ILIKE through its case-folding form. Missing keys sort last
 * in both directions, NaN metrics just before them, as MLflow's SQL store
 * orders them. trk_sql_page_at runs a built search for one page of its
 * answer.
 */
#include <stdio.h>
#include <string.h>

#include "tracking/tracking_internal.h"

void trk_sql_compare(trk_sql *q, const char *lhs, const trk_clause *cl)
{
    switch (cl->op) {
    case TRK_OP_LIKE:
    case TRK_OP_ILIKE:
        trk_sql_add(q, "trk_like(");
        trk_sql_add(q, lhs);
        trk_sql_add(q, ", ");
        trk_sql_bind_text(q, cl->text);
        trk_sql_add(q, cl->op == TRK_OP_ILIKE ? ", 1)" : ", 0)");
        return;
    case TRK_OP_IN:
    case TRK_OP_NOT_IN:
        trk_sql_add(q, lhs);
        trk_sql_add(q, cl->op == TRK_OP_IN ? " IN (" : " NOT IN (");
        for (int i = 0; i < cl->n_list; i++) {
            if (i)
                trk_sql_add(q, ", ");
            trk_sql_bind_text(q, cl->list[i]);
        }
        trk_sql_add(q, ")");
        return;
    case TRK_OP_IS_NULL:
    case TRK_OP_IS_NOT_NULL:
        trk_sql_add(q, lhs);
        trk_sql_add(q, cl->op == TRK_OP_IS_NULL ? " IS NULL" : " IS NOT NULL");
        return;
    default:
        trk_sql_add(q, lhs);
        trk_sql_add(q, " ");
        trk_sql_add(q, trk_op_sql(cl->op));
        trk_sql_add(q, " ");
        if (cl->is_number)
            trk_sql_bind_double(q, cl->number);
        else
            trk_sql_bind_text(q, cl->text);
    }
}

static void kv_head(trk_sql *q, const trk_kv_table *kv, const char *id_expr, const char *key)
{
    char head[256];
    snprintf(head, sizeof head, "SELECT 1 FROM %s kv WHERE kv.%s = %s AND kv.key = ", kv->table,
             kv->fk, id_expr);
    trk_sql_add(q, head);
    trk_sql_bind_text(q, key);
}

void trk_sql_exists_kv(trk_sql *q, const trk_kv_table *kv, const char *id_expr,
                       const trk_clause *cl)
{
    if (cl->op == TRK_OP_IS_NULL || cl->op == TRK_OP_IS_NOT_NULL) {
        trk_sql_add(q, cl->op == TRK_OP_IS_NULL ? "NOT EXISTS (" : "EXISTS (");
        kv_head(q, kv, id_expr, cl->key);
        trk_sql_add(q, ")");
        return;
    }
    trk_sql_add(q, "EXISTS (");
    kv_head(q, kv, id_expr, cl->key);
    if (kv->has_nan)
        trk_sql_add(q, " AND kv.is_nan = 0");
    trk_sql_add(q, " AND ");
    trk_sql_compare(q, "kv.value", cl);
    trk_sql_add(q, ")");
}

static void kv_value(trk_sql *q, const trk_kv_table *kv, const char *id_expr, const char *expr,
                     const char *key)
{
    char head[256];
    snprintf(head, sizeof head, "(SELECT %s FROM %s kv WHERE kv.%s = %s AND kv.key = ", expr,
             kv->table, kv->fk, id_expr);
    trk_sql_add(q, head);
    trk_sql_bind_text(q, key);
    trk_sql_add(q, ")");
}

void trk_sql_order_kv(trk_sql *q, const trk_kv_table *kv, const char *id_expr, const char *key,
                      int ascending)
{
    /* 0: a value, 1: NaN, 2: no such key — in this order both ways. */
    trk_sql_add(q, "coalesce(");
    kv_value(q, kv, id_expr, kv->has_nan ? "kv.is_nan" : "0", key);
    trk_sql_add(q, ", 2), ");
    kv_value(q, kv, id_expr, "kv.value", key);
    trk_sql_add(q, ascending ? " ASC" : " DESC");
}

void trk_sql_order_column(trk_sql *q, const char *column, int ascending)
{
    trk_sql_add(q, column);
    trk_sql_add(q, " IS NULL, ");
    trk_sql_add(q, column);
    trk_sql_add(q, ascending ? " ASC" : " DESC");
}

int trk_sql_page_at(trk_req *r, const char *file, int line, trk_sql *q, int64_t max_results,
                    int64_t offset, cJSON *resp, const char *list, trk_row_json row_json)
{
    /* One row more than the page tells whether another page follows. */
    trk_sql_add(q, " LIMIT ");
    trk_sql_bind_i64(q, max_results + 1);
    trk_sql_add(q, " OFFSET ");
    trk_sql_bind_i64(q, offset);
    sqlite3_stmt *st = trk_sql_prepare(r, q, file, line);
    if (!st)
        return -1;
    int64_t count = 0;
    int rc;
    while ((rc = trk_step_at(r, file, line, st)) == 1) {
        if (count++ == max_results) {
            trk_page_token_put(r, resp, offset + max_results);
            break;
        }
        cJSON *item = trk_arr_add_obj(r, trk_put_arr(r, resp, list));
        if (!item || row_json(r, st, item) != 0) {
            rc = -1;
            break;
        }
    }
    sqlite3_finalize(st);
    return rc < 0 ? -1 : 0;
}
